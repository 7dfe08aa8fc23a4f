package soak

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/livestore-relay/livestore-relay/auth"
)

// WorkerEnv, set to 1 in a process's environment, makes the soak program a
// worker: it reads its workerSpec as JSON on stdin, streams progress lines
// and ends with one result line on stdout.
const WorkerEnv = "SOAK_WORKER"

// Exit codes.
const (
	ExitPass   = 0
	ExitFail   = 1
	ExitUsage  = 2
	syncPath   = "/api/v1/livestore/sync"
	tokenSlack = time.Hour
)

// Main is the soak program: a worker when WorkerEnv says so, else a run
// configured by args. It returns the exit status.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if getenv(WorkerEnv) == "1" {
		return workerMain(ctx, stdin, stdout, stderr)
	}
	cfg, err := ParseFlags(args, stderr)
	if err != nil {
		switch {
		case errors.Is(err, flag.ErrHelp):
			return ExitPass
		case !errors.Is(err, errReported):
			fmt.Fprintf(stderr, "soak: %v\n", err)
		}
		return ExitUsage
	}
	res, err := Run(ctx, cfg, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "soak: %v\n", err)
		return ExitFail
	}
	if cfg.JSON {
		writeSummary(stderr, res)
		b, err := json.Marshal(res)
		if err != nil {
			fmt.Fprintf(stderr, "soak: encode result: %v\n", err)
			return ExitFail
		}
		fmt.Fprintf(stdout, "%s\n", b)
	} else {
		writeSummary(stdout, res)
	}
	if !res.Pass {
		return ExitFail
	}
	return ExitPass
}

// Run performs one soak run and returns its judged result. An error means
// the run could not take place at all (no relay, bad token file, ...).
func Run(ctx context.Context, cfg Config, stderr io.Writer) (*Result, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	runID := randomHex(4)
	if cfg.UserPrefix == "" {
		cfg.UserPrefix = "soak-" + runID + "-"
	}
	for _, w := range cfg.warnings() {
		fmt.Fprintf(stderr, "soak: warning: %s\n", w)
	}

	var relays []*relayProc
	if cfg.SpawnRelay != "" {
		var err error
		if relays, err = spawn(&cfg, stderr); err != nil {
			return nil, err
		}
		// Whatever happens next, the relays do not outlive the run.
		defer func() { _, _ = stopNodes(relays) }()
	}

	users, err := makeUsers(&cfg)
	if err != nil {
		return nil, err
	}
	specs := split(&cfg, users, runID)

	var smp *sampler
	smpCtx, stopSampler := context.WithCancel(context.Background())
	defer stopSampler()
	smpDone := make(chan struct{})
	if cfg.MetricsURL != "" {
		smp = newSampler(splitList(cfg.MetricsURL))
		go func() { defer close(smpDone); smp.run(smpCtx) }()
	} else {
		close(smpDone)
	}

	start := time.Now()
	prog := newProgressBoard(len(specs))
	stopProgress := startProgress(&cfg, prog, smp, stderr, start)
	var results []workerResult
	if len(specs) == 1 {
		if cfg.CPUProfile != "" {
			stopProfile, perr := startCPUProfile(cfg.CPUProfile)
			if perr != nil {
				return nil, perr
			}
			defer stopProfile()
		}
		results, err = runInProcess(ctx, specs[0], prog, stderr)
	} else {
		results, err = runProcs(ctx, &cfg, specs, prog, stderr)
	}
	stopProgress()
	if smp != nil {
		smp.sample(context.Background()) // one last look before the relay stops
	}
	stopSampler()
	<-smpDone
	if err != nil {
		return nil, err
	}

	res := &Result{
		Users: cfg.Users, Devices: cfg.Devices, Procs: len(specs), Idle: cfg.Idle,
		DurationSec: time.Since(start).Seconds(),
	}
	if err := res.merge(results); err != nil {
		return nil, err
	}
	if smp != nil {
		smp.fill(res)
		if res.ServerCPUSeconds != nil && res.Deliveries > 0 {
			// Handshakes are in it too; a longer run makes them count less.
			per := *res.ServerCPUSeconds * 1e6 / float64(res.Deliveries)
			res.ServerCPUPerDelivery = &per
		}
	}
	res.ClientCPUSeconds += cpuSeconds() // this process; workers added their own
	if len(relays) > 0 {
		// Even an interrupted run lets the relays drain: their exit is part of the check.
		codes, errs := stopNodes(relays)
		worst := 0
		for i, code := range codes {
			if worst == 0 {
				worst = code
			}
			if errs[i] != nil || code != 0 {
				fmt.Fprintf(stderr, "soak: %s exit %d (%v); its log ends with:\n%s\n", nodeName(i, len(relays)), code, errs[i], relays[i].logTail())
			}
		}
		res.RelayExitCode = &worst
		if cfg.SpawnNodes > 0 {
			res.RelayExitCodes = codes
		}
	}
	res.judge(int64(cfg.connsTotal()))
	return res, nil
}

// spawn starts the relay, or the nodes of a cluster, for the run and points
// cfg at them: the sync URLs, the metrics URLs and a fresh secret unless
// one was given.
func spawn(cfg *Config, stderr io.Writer) ([]*relayProc, error) {
	if cfg.Secret == "" {
		cfg.Secret = randomHex(32)
	}
	var files []*os.File
	// The files stay open while the relays log; a relay's log reader ends
	// when the relay exits, and Run stops the relays before it returns.
	logOut := func(i int) io.Writer {
		if cfg.RelayLog == "" {
			return nil
		}
		path := cfg.RelayLog
		if cfg.SpawnNodes > 0 {
			path = nodeLogPath(path, i)
		}
		f, err := os.Create(path)
		if err != nil {
			fmt.Fprintf(stderr, "soak: relay log: %v (kept in memory only)\n", err)
			return nil
		}
		files = append(files, f)
		return f
	}
	closeFiles := func() {
		for _, f := range files {
			f.Close()
		}
	}
	var relays []*relayProc
	if cfg.SpawnNodes > 0 {
		var err error
		if relays, err = spawnNodes(cfg.SpawnRelay, cfg.Secret, cfg.SpawnNodes, cfg.RelayFlags, logOut); err != nil {
			closeFiles() // the nodes have exited
			return nil, err
		}
	} else {
		r, err := startRelay(cfg.SpawnRelay, cfg.Secret, cfg.RelayFlags, logOut(0))
		if err != nil {
			closeFiles()
			return nil, err
		}
		relays = []*relayProc{r}
	}
	var urls, metrics []string
	for i, r := range relays {
		urls = append(urls, "ws://"+r.addr+syncPath)
		metrics = append(metrics, "http://"+r.addr+"/metrics")
		fmt.Fprintf(stderr, "soak: %s %s listening on %s\n", nodeName(i, len(relays)), cfg.SpawnRelay, r.addr)
	}
	cfg.URL = strings.Join(urls, ",")
	if cfg.MetricsURL == "" {
		cfg.MetricsURL = strings.Join(metrics, ",")
	}
	go func() {
		// Closed once every relay has exited and its log reader is done.
		for _, r := range relays {
			<-r.exited
		}
		closeFiles()
	}()
	return relays, nil
}

func nodeName(i, n int) string {
	if n == 1 {
		return "relay"
	}
	return "relay node " + strconv.Itoa(i)
}

func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails on supported platforms
	return hex.EncodeToString(b)
}

// makeUsers mints a token per user, or reads them from the token file.
func makeUsers(cfg *Config) ([]userSpec, error) {
	if cfg.TokenFile != "" {
		return readTokenFile(cfg.TokenFile, cfg.Users)
	}
	// Tokens outlive the run comfortably: a token expiring mid-run closes
	// its connection with 4001, which would fail the run.
	ttl := cfg.Ramp + cfg.Duration + cfg.Drain + cfg.ConnectTimeout + tokenSlack
	now := time.Now()
	users := make([]userSpec, cfg.Users)
	for i := range users {
		id := cfg.UserPrefix + strconv.Itoa(i)
		tok, err := auth.Mint([]byte(cfg.Secret), id, ttl, now)
		if err != nil {
			return nil, fmt.Errorf("mint token for %s: %w", id, err)
		}
		users[i] = userSpec{ID: id, Token: tok}
	}
	return users, nil
}

// split deals the users out to the workers, whole users each, with a share
// of the rate in proportion to their connections.
func split(cfg *Config, users []userSpec, runID string) []workerSpec {
	n := cfg.procs()
	specs := make([]workerSpec, n)
	for i := range specs {
		lo, hi := i*len(users)/n, (i+1)*len(users)/n
		specs[i] = workerSpec{
			Index: i, URLs: splitList(cfg.URL), RunID: runID, FirstUser: lo, Users: users[lo:hi],
			Devices: cfg.Devices, Rate: cfg.Rate * float64(hi-lo) / float64(len(users)),
			EventsPerPush: cfg.EventsPerPush, EventBytes: cfg.EventBytes,
			Duration: cfg.Duration, Ramp: cfg.Ramp, Drain: cfg.Drain, Idle: cfg.Idle,
			PeerPullEvery: cfg.PeerPullEvery, PeerPullPages: cfg.PeerPullPages, Store: cfg.Store,
			ConnectConcurrency: cfg.ConnectConcurrency, ConnectTimeout: cfg.ConnectTimeout,
		}
	}
	return specs
}

// hardLimit is how long a worker may take beyond its planned phases before
// it is killed: the run is bounded in time whatever the relay does.
func hardLimit(s workerSpec) time.Duration {
	return s.Ramp + s.ConnectTimeout + s.Duration + s.Drain + closeWait + time.Minute
}

func runInProcess(ctx context.Context, spec workerSpec, prog *progressBoard, stderr io.Writer) ([]workerResult, error) {
	w := newWorker(spec, stderr)
	prog.attach(0, w.progress)
	ctx, cancel := context.WithTimeout(ctx, hardLimit(spec))
	defer cancel()
	return []workerResult{w.run(ctx)}, nil
}

// workerLine is one line a worker process writes on stdout.
type workerLine struct {
	Progress *Progress     `json:"progress,omitempty"`
	Result   *workerResult `json:"result,omitempty"`
}

// runProcs re-executes the program once per spec and collects the results.
func runProcs(ctx context.Context, cfg *Config, specs []workerSpec, prog *progressBoard, stderr io.Writer) ([]workerResult, error) {
	exe := cfg.Exe
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("find own executable: %w", err)
		}
	}
	results := make([]workerResult, len(specs))
	errs := make([]error, len(specs))
	var wg sync.WaitGroup
	for i, spec := range specs {
		input, err := json.Marshal(spec)
		if err != nil {
			return nil, fmt.Errorf("encode worker spec: %w", err)
		}
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), WorkerEnv+"=1")
		cmd.Stdin = bytes.NewReader(input)
		cmd.Stderr = stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, fmt.Errorf("worker %d stdout: %w", i, err)
		}
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("start worker %d: %w", i, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = superviseWorker(ctx, i, cmd, out, hardLimit(spec), prog, &results[i])
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return results, nil
}

// superviseWorker reads a worker's lines until it exits; it passes an
// interrupt on and kills a worker that overruns its hard limit.
func superviseWorker(ctx context.Context, i int, cmd *exec.Cmd, out io.Reader, limit time.Duration, prog *progressBoard, res *workerResult) error {
	exited := make(chan struct{})
	go func() {
		t := time.NewTimer(limit)
		defer t.Stop()
		select {
		case <-exited:
			return
		case <-ctx.Done():
			_ = cmd.Process.Signal(syscall.SIGINT)
		case <-t.C:
			_ = cmd.Process.Kill()
			return
		}
		select {
		case <-exited:
		case <-t.C:
			_ = cmd.Process.Kill()
		}
	}()
	got := false
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var l workerLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			continue // not ours: a worker only writes these lines, but be lenient
		}
		if l.Progress != nil {
			p := *l.Progress
			prog.set(i, p)
		}
		if l.Result != nil {
			*res, got = *l.Result, true
		}
	}
	err := cmd.Wait()
	close(exited)
	if !got {
		return fmt.Errorf("worker %d ended without a result: %v", i, err)
	}
	return nil
}

// workerMain is a worker process: spec in on stdin, lines out on stdout.
func workerMain(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer) int {
	var spec workerSpec
	if err := json.NewDecoder(stdin).Decode(&spec); err != nil {
		fmt.Fprintf(stderr, "soak worker: read spec: %v\n", err)
		return ExitUsage
	}
	w := newWorker(spec, stderr)
	var mu sync.Mutex
	enc := json.NewEncoder(stdout)
	emit := func(l workerLine) error {
		mu.Lock()
		defer mu.Unlock()
		return enc.Encode(l)
	}
	stopTicks := make(chan struct{})
	ticksDone := make(chan struct{})
	go func() {
		defer close(ticksDone)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stopTicks:
				return
			case <-t.C:
				p := w.progress()
				_ = emit(workerLine{Progress: &p})
			}
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, hardLimit(spec))
	defer cancel()
	res := w.run(ctx)
	close(stopTicks)
	<-ticksDone
	res.ClientCPUSeconds = cpuSeconds()
	if err := emit(workerLine{Result: &res}); err != nil {
		fmt.Fprintf(stderr, "soak worker: write result: %v\n", err)
		return ExitFail
	}
	return ExitPass
}
