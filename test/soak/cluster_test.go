package soak

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/livestore-relay/livestore-relay/test/relaytest"
)

// fakeRelayEnv makes the test binary a stand-in for a relay node: "cluster"
// knows the cluster flags, "plain" does not. It lets the spawning logic be
// checked before, and independently of, a relay that can form a cluster.
const fakeRelayEnv = "SOAK_TEST_FAKE_RELAY"

func TestMain(m *testing.M) {
	if mode := os.Getenv(fakeRelayEnv); mode != "" {
		os.Exit(fakeRelay(mode, os.Args[1:]))
	}
	os.Exit(m.Run())
}

// fakeRelay listens on --addr and --cluster-addr, logs "listening" as the
// relay does, and answers /readyz with 200 only once every --cluster-peers
// address accepts a connection: ready means the whole cluster is up. GET
// /args returns its command line, /metrics a fixed exposition.
func fakeRelay(mode string, args []string) int {
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	fs.SetOutput(os.Stdout)
	addr := fs.String("addr", ":8080", "listen address")
	fs.String("log-format", "json", "log format")
	fs.String("fake-option", "", "passed through --relay-flags")
	var clusterAddr, peers *string
	if mode == "cluster" {
		clusterAddr = fs.String("cluster-addr", "", "this node's address for the others")
		peers = fs.String("cluster-peers", "", "seed nodes")
		fs.String("cluster-provider", "static", "static, etcd or kubernetes")
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if os.Getenv("RELAY_JWT_SECRET") == "" {
		fmt.Fprintln(os.Stderr, `{"level":"error","message":"no secret"}`)
		return 2
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "{\"level\":\"error\",\"message\":%q}\n", err.Error())
		return 1
	}
	var peerList []string
	if clusterAddr != nil {
		cl, err := net.Listen("tcp", *clusterAddr)
		if err != nil {
			fmt.Fprintf(os.Stderr, "{\"level\":\"error\",\"message\":%q}\n", err.Error())
			return 1
		}
		go func() {
			for {
				c, err := cl.Accept()
				if err != nil {
					return
				}
				_ = c.Close()
			}
		}()
		peerList = splitList(*peers)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		for _, p := range peerList {
			c, err := net.DialTimeout("tcp", p, time.Second)
			if err != nil {
				http.Error(w, "waiting for "+p, http.StatusServiceUnavailable)
				return
			}
			_ = c.Close()
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.HandleFunc("GET /args", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(args)
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "process_resident_memory_bytes 1.048576e+06\ngo_goroutines 10\nprocess_cpu_seconds_total 0.5\nlivestore_relay_connections 4\n")
	})
	fmt.Fprintf(os.Stderr, "{\"level\":\"info\",\"addr\":%q,\"message\":\"listening\"}\n", ln.Addr().String())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: time.Second}
	go func() { _ = srv.Serve(ln) }()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	_ = srv.Close()
	return 0
}

func useFakeRelay(t *testing.T, mode string) string {
	t.Helper()
	t.Setenv(fakeRelayEnv, mode)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

func flagValue(args []string, name string) string {
	v, _ := flagArg(args, name)
	return v
}

// TestSpawnNodes starts three stand-in nodes: each must get its own listen
// and cluster address, all the same seed list naming every node, the
// extra flags, and be ready before spawnNodes returns; the sampler must
// report each node and the sums; all must stop with 0.
func TestSpawnNodes(t *testing.T) {
	relay := useFakeRelay(t, "cluster")
	dir := t.TempDir()
	logPath := filepath.Join(dir, "relay.log")
	var logs []*os.File
	logOut := func(i int) io.Writer {
		f, err := os.Create(nodeLogPath(logPath, i))
		if err != nil {
			t.Fatal(err)
		}
		logs = append(logs, f)
		return f
	}
	nodes, err := spawnNodes(relay, "secret", 3, "--fake-option x", logOut)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			stopNodes(nodes)
		}
	}()
	if len(nodes) != 3 {
		t.Fatalf("%d nodes, want 3", len(nodes))
	}
	var addrs, clusterAddrs, metrics []string
	var peers string
	for i, n := range nodes {
		if status, err := httpStatus("http://" + n.addr + "/readyz"); err != nil || status != http.StatusOK {
			t.Errorf("node %d: /readyz %d, %v after spawnNodes returned", i, status, err)
		}
		var args []string
		getJSON(t, "http://"+n.addr+"/args", &args)
		addrs = append(addrs, n.addr)
		clusterAddrs = append(clusterAddrs, flagValue(args, "cluster-addr"))
		metrics = append(metrics, "http://"+n.addr+"/metrics")
		p := flagValue(args, "cluster-peers")
		if i == 0 {
			peers = p
		} else if p != peers {
			t.Errorf("node %d seeds %q, node 0 %q: want one list", i, p, peers)
		}
		if flagValue(args, "fake-option") != "x" || flagValue(args, "cluster-provider") != "static" {
			t.Errorf("node %d args %q: want --cluster-provider static and the extra flags", i, args)
		}
	}
	for _, list := range [][]string{addrs, clusterAddrs, append(slices.Clone(addrs), clusterAddrs...)} {
		if s := slices.Compact(slices.Sorted(slices.Values(list))); len(s) != len(list) {
			t.Errorf("addresses not distinct: %q", list)
		}
	}
	if got, want := splitList(peers), clusterAddrs; !slices.Equal(got, want) {
		t.Errorf("seed list %q, want every node's cluster address %q", got, want)
	}

	smp := newSampler(metrics)
	smp.sample(context.Background())
	smp.sample(context.Background())
	var res Result
	smp.fill(&res)
	if res.ServerPeakRSS == nil || *res.ServerPeakRSS != 3<<20 || len(res.ServerNodes) != 3 {
		t.Errorf("sums over 3 nodes: peak RSS %v, %d nodes", res.ServerPeakRSS, len(res.ServerNodes))
	}
	for i, n := range res.ServerNodes {
		if n.URL != metrics[i] || n.Samples != 2 || deref64(n.PeakRSS) != 1<<20 || deref64(n.PeakConns) != 4 {
			t.Errorf("node %d figures %+v", i, n)
		}
	}

	codes, errs := stopNodes(nodes)
	stopped = true
	for i := range codes {
		if codes[i] != 0 || errs[i] != nil {
			t.Errorf("node %d stopped with %d, %v", i, codes[i], errs[i])
		}
	}
	for i, f := range logs {
		f.Close()
		b, err := os.ReadFile(nodeLogPath(logPath, i))
		if err != nil || !bytes.Contains(b, []byte(`"listening"`)) {
			t.Errorf("node %d log %s: %v %q", i, nodeLogPath(logPath, i), err, b)
		}
	}
}

// TestSpawnNodesNeedsClusterRelay: a relay whose --help lacks
// --cluster-addr is refused before anything starts, with a message that
// says so.
func TestSpawnNodesNeedsClusterRelay(t *testing.T) {
	relay := useFakeRelay(t, "plain")
	if ok, err := relayKnowsFlag(relay, clusterFlag); err != nil || ok {
		t.Fatalf("relayKnowsFlag = %v, %v; want false", ok, err)
	}
	cfg := Config{
		SpawnRelay: relay, SpawnNodes: 3, Users: 2, Devices: 2, Rate: 10, EventsPerPush: 1,
		Duration: time.Second, PeerPullPages: 1, ConnectConcurrency: 1, ConnectTimeout: time.Second, Progress: -1,
	}
	_, err := Run(context.Background(), cfg, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--cluster-addr") {
		t.Fatalf("Run with --spawn-nodes against a relay without cluster flags: %v", err)
	}
	if ok, err := relayKnowsFlag(useFakeRelay(t, "cluster"), clusterFlag); err != nil || !ok {
		t.Fatalf("relayKnowsFlag on a cluster relay = %v, %v; want true", ok, err)
	}
}

func TestNodeArgs(t *testing.T) {
	addrs := []string{"127.0.0.1:7001", "127.0.0.1:7002"}
	args := nodeArgs(1, addrs, "--max-conns-per-user 64")
	want := []string{"--addr", "127.0.0.1:0", "--log-format", "json", "--cluster-addr", "127.0.0.1:7002",
		"--cluster-provider", "static", "--cluster-peers", "127.0.0.1:7001,127.0.0.1:7002", "--max-conns-per-user", "64"}
	if !slices.Equal(args, want) {
		t.Errorf("nodeArgs = %q\nwant       %q", args, want)
	}
	// A provider chosen in the extra flags brings its own discovery.
	args = nodeArgs(0, addrs, "--cluster-provider=etcd --cluster-etcd http://127.0.0.1:2379")
	if _, ok := flagArg(args, "cluster-peers"); ok || flagValue(args, "cluster-etcd") != "http://127.0.0.1:2379" {
		t.Errorf("with an etcd provider: %q", args)
	}
	// Naming the static provider changes nothing.
	args = nodeArgs(0, addrs, "--cluster-provider static")
	if v, _ := flagArg(args, "cluster-peers"); v != "127.0.0.1:7001,127.0.0.1:7002" {
		t.Errorf("with the static provider named: %q", args)
	}
	if got := nodeLogPath("bin/soak-relay.log", 2); got != "bin/soak-relay-node2.log" {
		t.Errorf("nodeLogPath = %q", got)
	}
}

func TestWaitReady(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		// Served one at a time: waitReady asks again only after an answer.
		if calls.Add(1) < 3 {
			http.Error(w, "not yet", http.StatusServiceUnavailable)
		}
	}), ReadHeaderTimeout: time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	url := "http://" + ln.Addr().String() + "/readyz"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := waitReady(ctx, url, nil); err != nil || calls.Load() != 3 {
		t.Errorf("waitReady: %v after %d calls, want nil after 3", err, calls.Load())
	}
	exited := make(chan struct{})
	close(exited)
	calls.Store(-1000)
	if err := waitReady(ctx, url, exited); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("waitReady on an exited process: %v", err)
	}
}

func httpStatus(url string) (int, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestSoakCluster soaks three real relay nodes of one cluster, each user's
// devices spread over them: every promise must hold across the nodes.
func TestSoakCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end run")
	}
	t.Parallel()
	relay := relaytest.Binary(t)
	if ok, err := relayKnowsFlag(relay, clusterFlag); err != nil {
		t.Fatal(err)
	} else if !ok {
		t.Skipf("the relay cannot form a cluster yet: relay --help does not list --%s", clusterFlag)
	}
	cfg := Config{
		SpawnRelay: relay, SpawnNodes: 3, Users: 60, Devices: 3, Rate: 300, EventsPerPush: 1, EventBytes: 150,
		Duration: 3 * time.Second, Drain: 5 * time.Second, PeerPullEvery: time.Second, PeerPullPages: 2,
		ConnectConcurrency: 16, ConnectTimeout: 10 * time.Second, Progress: -1,
		RelayLog: filepath.Join(t.TempDir(), "relay.log"),
	}
	res, b, stderr := runSoak(t, cfg, 2*time.Minute)
	if !res.Pass {
		t.Fatalf("cluster soak failed: %v\n%s\n%s", res.Failures, b, stderr)
	}
	switch {
	case res.Connections != 180 || res.OpenAtEnd != 180:
		t.Errorf("connections %d, open at end %d, want 180", res.Connections, res.OpenAtEnd)
	case res.Pushes < 300 || res.Acks != res.Pushes || res.Deliveries != 2*res.Acks:
		t.Errorf("pushes %d acks %d deliveries %d", res.Pushes, res.Acks, res.Deliveries)
	case res.PeerPulls == 0 || res.PeerPullsAnswered != res.PeerPulls:
		t.Errorf("peer_pulls %d answered %d", res.PeerPulls, res.PeerPullsAnswered)
	case len(res.ServerNodes) != 3 || !slices.Equal(res.RelayExitCodes, []int{0, 0, 0}):
		t.Errorf("nodes: %s", b)
	}
	for i, n := range res.ServerNodes {
		// Each node held its share of the devices: 60 connections.
		if deref64(n.PeakConns) != 60 || deref64(n.PeakRSS) <= 0 {
			t.Errorf("node %d: %+v", i, n)
		}
	}
	for i := range 3 {
		if b, err := os.ReadFile(nodeLogPath(cfg.RelayLog, i)); err != nil || len(b) == 0 {
			t.Errorf("node %d log: %v, %d bytes", i, err, len(b))
		}
	}
}
