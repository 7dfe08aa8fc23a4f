package soak

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// nodeReadyTimeout is how long the nodes of a spawned cluster have, all
// together, to listen and answer /readyz with 200: joining a cluster takes
// longer than starting one relay.
const nodeReadyTimeout = 60 * time.Second

// clusterFlag is the relay flag that gives a node its cluster address; a
// relay whose --help does not list it cannot form a cluster.
const clusterFlag = "cluster-addr"

// relayKnowsFlag reports whether the relay binary at path lists --name in
// its --help output.
func relayKnowsFlag(path, name string) (bool, error) {
	cmd := exec.Command(path, "--help")
	cmd.Env = withoutRelayVars()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return false, fmt.Errorf("%s --help: %w\n%s", path, err, out.String())
	}
	re := regexp.MustCompile(`(?m)^\s+--?` + regexp.QuoteMeta(name) + `(\s|$)`)
	return re.Match(out.Bytes()), nil
}

func withoutRelayVars() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RELAY_") {
			env = append(env, kv)
		}
	}
	return env
}

// freeLoopbackAddrs returns n distinct 127.0.0.1 addresses with ports that
// were free a moment ago. The cluster addresses must be known before any
// node starts, since every node is given all of them as seeds, so the
// ports are picked here and released just before the nodes bind them.
func freeLoopbackAddrs(n int) ([]string, error) {
	addrs := make([]string, 0, n)
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick a free port: %w", err)
		}
		lns = append(lns, ln) // held until all are picked, so that they differ
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs, nil
}

// nodeArgs is the command line of node i of a cluster whose nodes have the
// given cluster addresses. The provider is static with every node as a
// seed, unless extraFlags choose another provider, which brings its own
// discovery; extraFlags come last, so that they win over the tool's
// choices.
func nodeArgs(i int, clusterAddrs []string, extraFlags string) []string {
	extra := strings.Fields(extraFlags)
	args := append(baseRelayArgs(), "--"+clusterFlag, clusterAddrs[i])
	if p, ok := flagArg(extra, "cluster-provider"); !ok || p == "static" {
		args = append(args, "--cluster-provider", "static", "--cluster-peers", strings.Join(clusterAddrs, ","))
	}
	return append(args, extra...)
}

// flagArg is the value args give --name (or -name), as `--name v` or
// `--name=v`; the last one wins, as in the flag package.
func flagArg(args []string, name string) (value string, ok bool) {
	for i, a := range args {
		if !strings.HasPrefix(a, "-") {
			continue
		}
		a = strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		switch {
		case a == name && i+1 < len(args):
			value, ok = args[i+1], true
		case strings.HasPrefix(a, name+"="):
			value, ok = strings.TrimPrefix(a, name+"="), true
		}
	}
	return value, ok
}

// nodeLogPath is node i's log file: the -nodeI suffix goes before the
// extension, bin/soak-relay.log becoming bin/soak-relay-node0.log.
func nodeLogPath(path string, i int) string {
	ext := filepath.Ext(path)
	return strings.TrimSuffix(path, ext) + "-node" + strconv.Itoa(i) + ext
}

// spawnNodes starts n relay nodes of one cluster on loopback and returns
// once every one listens and answers /readyz with 200; on failure the
// nodes already started are stopped. logOut gives each node's log writer
// (nil: kept in memory only).
func spawnNodes(path, secret string, n int, extraFlags string, logOut func(i int) io.Writer) ([]*relayProc, error) {
	ok, err := relayKnowsFlag(path, clusterFlag)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%s cannot form a cluster: its --help does not list --%s", path, clusterFlag)
	}
	clusterAddrs, err := freeLoopbackAddrs(n)
	if err != nil {
		return nil, err
	}
	nodes := make([]*relayProc, 0, n)
	stopAll := func() {
		stopNodes(nodes)
	}
	// All nodes start before any is waited for: a node may wait for its
	// seeds before it listens or turns ready.
	for i := range n {
		var w io.Writer
		if logOut != nil {
			w = logOut(i)
		}
		r, err := spawnRelay(path, secret, nodeArgs(i, clusterAddrs, extraFlags), w)
		if err != nil {
			stopAll()
			return nil, fmt.Errorf("node %d: %w", i, err)
		}
		nodes = append(nodes, r)
	}
	deadline := time.Now().Add(nodeReadyTimeout)
	for i, r := range nodes {
		if err := r.waitListening(time.Until(deadline)); err != nil {
			stopAll()
			return nil, fmt.Errorf("node %d (cluster address %s): %w", i, clusterAddrs[i], err)
		}
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	for i, r := range nodes {
		if err := waitReady(ctx, "http://"+r.addr+"/readyz", r.exited); err != nil {
			stopAll()
			return nil, fmt.Errorf("node %d (%s, cluster address %s): %w:\n%s", i, r.addr, clusterAddrs[i], err, r.logTail())
		}
	}
	return nodes, nil
}

// readyPoll is how often a node's /readyz is asked while it is not ready.
const readyPoll = 50 * time.Millisecond

// waitReady polls url until it answers 200, the context ends or exited is
// closed (the process behind it is gone).
func waitReady(ctx context.Context, url string, exited <-chan struct{}) error {
	client := &http.Client{Timeout: 2 * time.Second}
	last := "no answer"
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("readiness request: %w", err)
		}
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else if !errors.Is(err, context.DeadlineExceeded) {
			last = err.Error()
		}
		t := time.NewTimer(readyPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("GET %s not 200 in time (last: %s)", url, last)
		case <-exited:
			t.Stop()
			return fmt.Errorf("exited before GET %s answered 200 (last: %s)", url, last)
		case <-t.C:
		}
	}
}

// stopNodes stops the nodes side by side and returns their exit codes and
// errors, in node order.
func stopNodes(nodes []*relayProc) ([]int, []error) {
	codes := make([]int, len(nodes))
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, r := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], errs[i] = r.stop()
		}()
	}
	wg.Wait()
	return codes, errs
}
