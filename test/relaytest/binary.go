package relaytest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/livestore-relay/livestore-relay/transport"
)

// binaryPackage is the import path of the relay command.
const binaryPackage = "github.com/livestore-relay/livestore-relay/cmd/relay"

// binDirPrefix names the directories the relay binary is built into.
const binDirPrefix = "livestore-relay-test-bin-"

var build struct {
	once sync.Once
	path string
	err  error
}

// Binary builds the relay command once per test process and returns the
// path of the executable. Each test process builds into a directory of its
// own, named after its pid, so concurrent runs never execute each other's
// build; directories of processes that have ended are removed.
func Binary(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		removeStaleBuilds()
		dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", binDirPrefix, os.Getpid()))
		if err != nil {
			build.err = err
			return
		}
		path := filepath.Join(dir, "relay")
		out, err := exec.Command("go", "build", "-o", path, binaryPackage).CombinedOutput()
		if err != nil {
			build.err = fmt.Errorf("go build %s: %v\n%s", binaryPackage, err, out)
			return
		}
		build.path = path
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.path
}

// removeStaleBuilds removes the build directories of test processes that
// are no longer running (and any older than a day whose owner is unknown).
func removeStaleBuilds() {
	matches, _ := filepath.Glob(filepath.Join(os.TempDir(), binDirPrefix+"*"))
	for _, m := range matches {
		name := strings.TrimPrefix(filepath.Base(m), binDirPrefix)
		pidText, _, _ := strings.Cut(name, "-")
		if pid, err := strconv.Atoi(pidText); err == nil {
			if pid != os.Getpid() && !running(pid) {
				_ = os.RemoveAll(m)
			}
			continue
		}
		if fi, err := os.Stat(m); err == nil && time.Since(fi.ModTime()) > 24*time.Hour {
			_ = os.RemoveAll(m)
		}
	}
}

// running reports whether a process with this pid exists.
func running(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	err = p.Signal(syscall.Signal(0))
	return err == nil || errors.Is(err, syscall.EPERM)
}

// CleanEnv is the test process's environment without any RELAY_ variable,
// so that the caller's shell cannot change what a test of the binary sees.
func CleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RELAY_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// Process is one run of the relay binary.
type Process struct {
	t      testing.TB
	cmd    *exec.Cmd
	stdout syncBuffer
	stderr syncBuffer
	exited chan struct{}
	code   int
}

// Exec runs the relay binary with args and env (see CleanEnv) and returns
// at once. The process is killed, if still running, when the test ends.
func Exec(t testing.TB, env []string, args ...string) *Process {
	t.Helper()
	return ExecInput(t, env, nil, args...)
}

// ExecInput is Exec with stdin as the process's standard input (nil: empty).
func ExecInput(t testing.TB, env []string, stdin io.Reader, args ...string) *Process {
	t.Helper()
	p := &Process{t: t, exited: make(chan struct{})}
	p.cmd = exec.Command(Binary(t), args...)
	p.cmd.Env = env
	p.cmd.Stdin = stdin
	p.cmd.Stdout = &p.stdout
	p.cmd.Stderr = &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start relay: %v", err)
	}
	go func() {
		err := p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			p.code = -1
		}
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
			return
		default:
		}
		_ = p.cmd.Process.Kill()
		<-p.exited
	})
	return p
}

// Run runs the relay binary to completion and returns its exit code,
// standard output and standard error.
func Run(t testing.TB, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	p := Exec(t, env, args...)
	code = p.Wait(30 * time.Second)
	return code, p.Stdout(), p.Stderr()
}

// Stdout is everything the process has written to standard output so far.
func (p *Process) Stdout() string { return p.stdout.String() }

// Stderr is everything the process has written to standard error so far.
func (p *Process) Stderr() string { return p.stderr.String() }

// Signal sends sig to the process.
func (p *Process) Signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v: %v", sig, err)
	}
}

// Exited is closed when the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Wait waits up to d for the process to exit and returns its exit code.
func (p *Process) Wait(d time.Duration) int {
	p.t.Helper()
	select {
	case <-p.exited:
		return p.code
	case <-time.After(d):
		p.t.Fatalf("relay still running after %v\nstdout:\n%s\nstderr:\n%s", d, p.Stdout(), p.Stderr())
		return 0
	}
}

// Listening waits for the JSON log line {"message":"listening","addr":...}
// on standard error and returns the address it names.
func (p *Process) Listening() string {
	p.t.Helper()
	var addr string
	deadline := time.Now().Add(15 * time.Second)
	for {
		if addr = listeningAddr(p.Stderr()); addr != "" {
			return addr
		}
		select {
		case <-p.exited:
			p.t.Fatalf("relay exited with %d before listening\nstdout:\n%s\nstderr:\n%s", p.code, p.Stdout(), p.Stderr())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("relay did not log that it listens\nstderr:\n%s", p.Stderr())
		}
	}
}

func listeningAddr(log string) string {
	sc := bufio.NewScanner(strings.NewReader(log))
	for sc.Scan() {
		var line struct {
			Message string `json:"message"`
			Addr    string `json:"addr"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Message == "listening" && line.Addr != "" {
			return line.Addr
		}
	}
	return ""
}

// Server returns a view of the running process as a Server at addr, so that
// Dial, DialWith, Get and Metric work against it. Dial signs with Secret, so
// the process must accept it. Stop sends SIGTERM and waits for a clean exit.
func (p *Process) Server(addr string) *Server {
	done := make(chan error, 1)
	go func() {
		<-p.exited
		if p.code != 0 {
			done <- fmt.Errorf("relay exited with %d", p.code)
			return
		}
		done <- nil
	}()
	return &Server{
		Addr: addr, URL: "ws://" + addr + transport.SyncPath, HTTP: "http://" + addr,
		cancel: func() { _ = p.cmd.Process.Signal(syscall.SIGTERM) },
		done:   done,
	}
}

// StartBinary runs the relay binary on 127.0.0.1:0 with args and env (see
// CleanEnv) and waits until it listens. RELAYTEST_READER, when set, chooses
// its socket reader as it does for Start. The process is stopped with SIGTERM
// when the test ends, and must then exit 0.
func StartBinary(t testing.TB, env []string, args ...string) (*Server, *Process) {
	t.Helper()
	base := []string{"--addr", "127.0.0.1:0"}
	if r := os.Getenv("RELAYTEST_READER"); r != "" {
		base = append(base, "--reader", r)
	}
	p := Exec(t, env, append(base, args...)...)
	s := p.Server(p.Listening())
	t.Cleanup(func() { s.Stop(t) })
	return s, p
}

// syncBuffer is a bytes.Buffer safe for a writer and concurrent readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
