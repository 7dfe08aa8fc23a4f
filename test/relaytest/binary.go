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

// binDirPrefix names the directories test binaries are built into.
const binDirPrefix = "livestore-relay-test-bin-"

// BuildOptions say how Build builds a command; the zero value is a plain
// `go build`.
type BuildOptions struct {
	// Flags are go build flags, such as "-tags", "x" or "-trimpath".
	Flags []string
	// Env is added to the environment of go build, such as "CGO_ENABLED=0".
	Env []string
}

// builds holds every binary this test process has built, by package and
// options, so that each is built once however many tests ask for it. The
// directory is created by the first build; mu guards the map, and each
// entry's once its own build, so that different builds run in parallel.
var builds struct {
	mu     sync.Mutex
	dir    string
	dirErr error
	byKey  map[string]*built
}

type built struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// Build builds the command pkg (an import path, or a path relative to the
// module's root such as ./cmd/relay) with opts, once per test process, and
// returns the path of the executable, named after the package's last
// element. Each test process builds into a directory of its own, named
// after its pid, so concurrent runs never execute each other's build;
// directories of processes that have ended are removed.
func Build(t testing.TB, pkg string, opts BuildOptions) string {
	t.Helper()
	key := strings.Join(append(append([]string{pkg}, opts.Flags...), opts.Env...), "\x00")
	builds.mu.Lock()
	if builds.dir == "" && builds.dirErr == nil {
		removeStaleBuilds()
		builds.dir, builds.dirErr = os.MkdirTemp("", fmt.Sprintf("%s%d-", binDirPrefix, os.Getpid()))
	}
	if builds.dirErr != nil {
		builds.mu.Unlock()
		t.Fatalf("build directory: %v", builds.dirErr)
	}
	if builds.byKey == nil {
		builds.byKey = map[string]*built{}
	}
	b, ok := builds.byKey[key]
	if !ok {
		b = &built{dir: filepath.Join(builds.dir, strconv.Itoa(len(builds.byKey)))}
		builds.byKey[key] = b
	}
	builds.mu.Unlock()

	b.once.Do(func() { b.path, b.err = goBuild(b.dir, pkg, opts) })
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// goBuild builds pkg into dir, from the module's root.
func goBuild(dir, pkg string, opts BuildOptions) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, filepath.Base(pkg))
	args := append(append([]string{"build"}, opts.Flags...), "-o", path, pkg)
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), opts.Env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%s go %s: %w\n%s", strings.Join(opts.Env, " "), strings.Join(args, " "), err, out)
	}
	return path, nil
}

// moduleRoot is the nearest directory above the working directory (a test's
// package directory) that holds go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// Binary builds the relay command once per test process (see Build) and
// returns the path of the executable.
func Binary(t testing.TB) string {
	t.Helper()
	return Build(t, binaryPackage, BuildOptions{})
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

// Process is one run of the relay binary, or of another program.
type Process struct {
	t      testing.TB
	name   string
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
	return ExecPath(t, Binary(t), env, stdin, args...)
}

// ExecPath is ExecInput for the executable at path (a relay built another
// way, or another program; see Build). A nil env is the test process's
// environment.
func ExecPath(t testing.TB, path string, env []string, stdin io.Reader, args ...string) *Process {
	t.Helper()
	p := &Process{t: t, name: filepath.Base(path), exited: make(chan struct{})}
	p.cmd = exec.Command(path, args...)
	p.cmd.Env = env
	p.cmd.Stdin = stdin
	p.cmd.Stdout = &p.stdout
	p.cmd.Stderr = &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.name, err)
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
		p.t.Fatalf("%s still running after %v\nstdout:\n%s\nstderr:\n%s", p.name, d, p.Stdout(), p.Stderr())
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
			p.t.Fatalf("%s exited with %d before listening\nstdout:\n%s\nstderr:\n%s", p.name, p.code, p.Stdout(), p.Stderr())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s did not log that it listens\nstderr:\n%s", p.name, p.Stderr())
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
	return StartPath(t, Binary(t), env, args...)
}

// StartPath is StartBinary for the relay executable at path (one built
// another way; see Build).
func StartPath(t testing.TB, path string, env []string, args ...string) (*Server, *Process) {
	t.Helper()
	base := []string{"--addr", "127.0.0.1:0"}
	if r := os.Getenv("RELAYTEST_READER"); r != "" {
		base = append(base, "--reader", r)
	}
	p := ExecPath(t, path, env, nil, append(base, args...)...)
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
