package soak

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	relayStartTimeout = 15 * time.Second
	// relayStopTimeout covers the relay's drain (10 s by default) and more.
	relayStopTimeout = 30 * time.Second
	relayLogTail     = 40
)

// relayProc is a relay binary the tool started for the run.
type relayProc struct {
	cmd    *exec.Cmd
	addr   string      // host:port it listens on, set by waitListening
	addrCh chan string // the address as logged, written by the log reader
	exited chan struct{}
	code   int // exit code, written before exited is closed

	mu   sync.Mutex
	tail []string // last lines of its log
	log  io.Writer
}

// startRelay runs the relay at path on 127.0.0.1 with a random port and the
// given secret, and waits until its log says where it listens.
func startRelay(path, secret, extraFlags string, logOut io.Writer) (*relayProc, error) {
	r, err := spawnRelay(path, secret, append(baseRelayArgs(), strings.Fields(extraFlags)...), logOut)
	if err != nil {
		return nil, err
	}
	return r, r.waitListening(relayStartTimeout)
}

// baseRelayArgs are the flags every spawned relay gets first: a random
// port on loopback, and logs the tool can read.
func baseRelayArgs() []string { return []string{"--addr", "127.0.0.1:0", "--log-format", "json"} }

// spawnRelay starts the relay at path with args and returns at once; its
// address arrives once it logs that it listens (waitListening). The secret
// travels in the environment, not the command line; the caller's RELAY_
// variables are dropped so that only what the tool asks for applies.
func spawnRelay(path, secret string, args []string, logOut io.Writer) (*relayProc, error) {
	cmd := exec.Command(path, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RELAY_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "RELAY_JWT_SECRET="+secret)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("relay stderr: %w", err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start relay %s: %w", path, err)
	}
	r := &relayProc{cmd: cmd, exited: make(chan struct{}), log: logOut, addrCh: make(chan string, 1)}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			r.keep(line)
			var l struct {
				Message string `json:"message"`
				Addr    string `json:"addr"`
			}
			if json.Unmarshal([]byte(line), &l) == nil && l.Message == "listening" && l.Addr != "" {
				select {
				case r.addrCh <- l.Addr:
				default:
				}
			}
		}
	}()
	go func() {
		<-scanned // Wait closes the pipe: read it to the end first
		_ = cmd.Wait()
		r.code = cmd.ProcessState.ExitCode()
		close(r.exited)
	}()
	return r, nil
}

// waitListening waits until the relay logs its address; a relay that exits
// first, or stays silent past the timeout (then it is killed), is an error.
func (r *relayProc) waitListening(timeout time.Duration) error {
	select {
	case r.addr = <-r.addrCh:
		return nil
	case <-r.exited:
		return fmt.Errorf("relay exited with %d before listening:\n%s", r.code, r.logTail())
	case <-time.After(timeout):
		_ = r.cmd.Process.Kill()
		<-r.exited
		return fmt.Errorf("relay did not log that it listens within %v:\n%s", timeout, r.logTail())
	}
}

func (r *relayProc) keep(line string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.log != nil {
		fmt.Fprintln(r.log, line)
	}
	r.tail = append(r.tail, line)
	if len(r.tail) > relayLogTail {
		r.tail = r.tail[len(r.tail)-relayLogTail:]
	}
}

func (r *relayProc) logTail() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.tail, "\n")
}

// stop sends SIGTERM and waits for the relay to exit, killing it if its
// drain overruns; it returns the exit code (-1 when killed by a signal).
func (r *relayProc) stop() (int, error) {
	select {
	case <-r.exited:
		return r.code, nil
	default:
	}
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return -1, fmt.Errorf("signal relay: %w", err)
	}
	t := time.NewTimer(relayStopTimeout)
	defer t.Stop()
	select {
	case <-r.exited:
		return r.code, nil
	case <-t.C:
	}
	_ = r.cmd.Process.Kill()
	<-r.exited
	return r.code, fmt.Errorf("relay did not exit after SIGTERM within %v; killed", relayStopTimeout)
}
