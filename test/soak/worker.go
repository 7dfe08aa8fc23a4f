package soak

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// workerSpec is the share of a run one worker process (or the tool itself,
// with one process) carries: whole users, so that every check is local.
type workerSpec struct {
	Index              int           `json:"index"`
	URLs               []string      `json:"urls"` // the nodes; a user's devices are spread over them by nodeFor
	RunID              string        `json:"run_id"`
	FirstUser          int           `json:"first_user"`
	Users              []userSpec    `json:"users"`
	Devices            int           `json:"devices"`
	Rate               float64       `json:"rate"`
	EventsPerPush      int           `json:"events_per_push"`
	EventBytes         int           `json:"event_bytes"`
	Duration           time.Duration `json:"duration"`
	Ramp               time.Duration `json:"ramp"`
	Drain              time.Duration `json:"drain"`
	Idle               bool          `json:"idle"`
	PeerPullEvery      time.Duration `json:"peer_pull_every"`
	PeerPullPages      int           `json:"peer_pull_pages"`
	Store              string        `json:"store,omitempty"`
	ConnectConcurrency int           `json:"connect_concurrency"`
	ConnectTimeout     time.Duration `json:"connect_timeout"`
}

const (
	// closeWait is how long the tool waits for the relay to answer its
	// close frames before dropping the sockets.
	closeWait = 3 * time.Second
	// settlePoll is how often the drain checks whether everything arrived.
	settlePoll = 20 * time.Millisecond
)

// worker runs one share of the load.
type worker struct {
	spec    workerSpec
	users   []*user
	devices []*device
	st      *stats
	phase   atomic.Pointer[string]
	readers sync.WaitGroup
	frames  sync.Pool // *frameBuilder
	bufs    sync.Pool // *[]byte

	errOnce sync.Once
	errOut  io.Writer // first connect failure and first relay error are shown, to tell why
	errMu   sync.Mutex
}

func newWorker(spec workerSpec, errOut io.Writer) *worker {
	w := &worker{spec: spec, st: newStats(), errOut: errOut}
	w.setPhase("connect")
	for i, us := range spec.Users {
		u := &user{index: spec.FirstUser + i, spec: us}
		// Request ids carry the run and the user, so that a peer_pull from
		// anywhere else is recognized as foreign.
		u.reqPrefix = spec.RunID + "." + strconv.Itoa(u.index) + "."
		ids := make([]string, spec.Devices)
		session := "s-" + spec.RunID
		for j := range ids {
			ids[j] = "dev" + strconv.Itoa(j)
		}
		u.book = newBook(us.ID, ids)
		for j := range ids {
			d := &device{
				w: w, u: u, idx: j, shard: len(w.devices),
				id:      newIdentity(us.ID, ids[j], session, j, spec.Store),
				boundCh: make(chan struct{}),
				pulls:   make(map[string]*pendingPull),
			}
			d.pad = max(0, spec.EventBytes-stampBytes(&d.id))
			u.devices = append(u.devices, d)
			w.devices = append(w.devices, d)
		}
		w.users = append(w.users, u)
	}
	return w
}

// nodeFor is the node, of n, that device d of user u connects to. Device d
// of user u goes to node (u+d) mod n: every user with two devices or more
// has them on different nodes, so that delivery between nodes is what the
// run checks, and the rotation by user keeps the nodes evenly loaded when
// the devices are not a multiple of the nodes (4 devices on 3 nodes would
// otherwise put half of all connections on the first).
func nodeFor(u, d, n int) int { return (u + d) % n }

func (w *worker) setPhase(p string) { w.phase.Store(&p) }

func (w *worker) progress() Progress { return w.st.progress(*w.phase.Load()) }

func (w *worker) getFrame() *frameBuilder {
	if f, ok := w.frames.Get().(*frameBuilder); ok {
		return f
	}
	return &frameBuilder{b: make([]byte, 0, 512)}
}

func (w *worker) putFrame(f *frameBuilder) {
	if cap(f.b) <= 1<<20 {
		w.frames.Put(f)
	}
}

func (w *worker) getBuf(n int) []byte {
	if p, ok := w.bufs.Get().(*[]byte); ok && cap(*p) >= n {
		return (*p)[:n]
	}
	return make([]byte, n, max(n, 1024))
}

func (w *worker) putBuf(b []byte) {
	if cap(b) <= 1<<20 {
		w.bufs.Put(&b)
	}
}

func (w *worker) connectFailed(kind string, err error) {
	w.st.connectErrors.Add(1)
	w.st.connectFailures.add(kind, 1)
	w.firstError(err)
}

// firstError shows the first problem of the run on stderr; the rest are
// only counted.
func (w *worker) firstError(err error) {
	w.errOnce.Do(func() {
		w.errMu.Lock()
		defer w.errMu.Unlock()
		fmt.Fprintf(w.errOut, "soak: worker %d: first problem: %v\n", w.spec.Index, err)
	})
}

// run connects, sends, drains, closes and tallies. Cancelling ctx cuts the
// connect and traffic phases short; the drain and close still run, bounded
// by their own timeouts, so that an interrupted run still reports.
func (w *worker) run(ctx context.Context) workerResult {
	connectStart := time.Now()
	w.connect(ctx)
	connectSecs := time.Since(connectStart).Seconds()

	trafficSecs := 0.0
	if ctx.Err() == nil {
		if w.spec.Idle {
			w.setPhase("idle")
			sleepCtx(ctx, w.spec.Duration)
		} else {
			w.setPhase("traffic")
			trafficSecs = w.traffic(ctx)
			w.setPhase("drain")
			w.drain()
		}
	}
	interrupted := ctx.Err() != nil

	var openAtEnd int64
	for _, d := range w.devices {
		if d.live() {
			openAtEnd++
		}
	}
	w.setPhase("close")
	w.closeAll()
	w.setPhase("done")
	return w.result(connectSecs, trafficSecs, openAtEnd, interrupted)
}

// connect opens every device, spread over the ramp, with a bounded number
// of attempts in flight, and returns when each is bound or has failed.
func (w *worker) connect(ctx context.Context) {
	start := time.Now()
	sem := make(chan struct{}, w.spec.ConnectConcurrency)
	var wg sync.WaitGroup
	n := len(w.devices)
	for i, d := range w.devices {
		if w.spec.Ramp > 0 {
			at := start.Add(time.Duration(int64(w.spec.Ramp) * int64(i) / int64(n)))
			sleepCtx(ctx, time.Until(at))
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			d.open(ctx)
		}()
	}
	wg.Wait()
}

// traffic runs the senders for the configured duration and returns how long
// traffic actually ran.
func (w *worker) traffic(ctx context.Context) float64 {
	var live []*device
	for _, d := range w.devices {
		if d.live() {
			live = append(live, d)
		}
	}
	if len(live) == 0 {
		return 0
	}
	// A few sender goroutines, each pacing a fixed slice of devices, rather
	// than a timer per device: 19,000 idle timers would cost more than the
	// sends themselves.
	k := min(len(live), max(2, 2*runtime.GOMAXPROCS(0)))
	start := time.Now()
	until := start.Add(w.spec.Duration)
	var wg sync.WaitGroup
	for i := range k {
		var mine []*device
		for j := i; j < len(live); j += k {
			mine = append(mine, live[j])
		}
		share := float64(len(mine)) / float64(len(live))
		pulls := 0.0
		if w.spec.PeerPullEvery > 0 {
			pulls = float64(len(mine)) / w.spec.PeerPullEvery.Seconds()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			first := 0
			if w.spec.Store != "" {
				// Pacer i holds device i mod k of every user, and the pacers
				// go round in step: without an offset a user's devices would
				// push to its store at the same instant, every time.
				first = i * len(mine) / k
			}
			sendLoop(ctx, mine, first, w.spec.Rate*share, pulls, start, until)
		}()
	}
	wg.Wait()
	return time.Since(start).Seconds()
}

// sendLoop paces pushes and peer_pulls over devs, round robin, so that each
// device sends at the same low rate and the aggregate is pushRate.
func sendLoop(ctx context.Context, devs []*device, first int, pushRate, pullRate float64, start, until time.Time) {
	period := time.Duration(float64(time.Second) / (pushRate + pullRate))
	period = min(max(period, time.Millisecond), 20*time.Millisecond)
	t := time.NewTicker(period)
	defer t.Stop()
	// A stall (a blocked write, a descheduled process) must not turn into a
	// burst that trips the relay's per-connection rate limit (burst 400 by
	// default): at most a quarter second of sends, or one round of the
	// devices, is caught up; the rest shows as a lower achieved rate.
	backlog := max(int64(len(devs)), int64((pushRate+pullRate)/4))
	var pushes, pulls int64
	pi, qi := first%max(len(devs), 1), 0
	for {
		now := time.Now()
		if !now.Before(until) {
			return
		}
		el := now.Sub(start).Seconds()
		if due := int64(el * pushRate); due > pushes {
			pushes = max(pushes, due-backlog)
			for ; pushes < due; pushes++ {
				if d := devs[pi]; d.live() {
					d.sendPush()
				}
				pi = (pi + 1) % len(devs)
			}
		}
		if due := int64(el * pullRate); due > pulls {
			pulls = max(pulls, due-backlog)
			for ; pulls < due; pulls++ {
				if d := devs[qi]; d.live() {
					d.sendPeerPull()
				}
				qi = (qi + 1) % len(devs)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// drain waits until every push is acked and delivered and every peer_pull
// answered, or the drain time is up: what is missing then is lost.
func (w *worker) drain() {
	st := w.st
	deadline := time.Now().Add(w.spec.Drain)
	for time.Now().Before(deadline) {
		acked := st.acks.Load()+st.skippedAcks.Load() >= st.pushes.Load()
		delivered := st.firstDeliveries.Load() >= st.expectedSoFar.Load()
		answered := st.peerPullsAnswered.Load() >= st.peerPulls.Load()
		if acked && delivered && answered {
			return
		}
		time.Sleep(settlePoll)
	}
}

// closeAll closes every connection with 1000 and waits for the readers.
func (w *worker) closeAll() {
	deadline := time.Now().Add(closeWait)
	for _, d := range w.devices {
		if d.conn != nil && !d.isClosed.Load() {
			d.closeByTool(deadline)
		}
	}
	done := make(chan struct{})
	go func() { w.readers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(closeWait + time.Second):
		// A reader stuck despite its deadline: closing the socket ends it.
		for _, d := range w.devices {
			if d.conn != nil {
				_ = d.conn.Close()
			}
		}
		<-done
	}
}

func (w *worker) result(connectSecs, trafficSecs float64, openAtEnd int64, interrupted bool) workerResult {
	st := w.st
	var t tally
	var unanswered int64
	for _, u := range w.users {
		live := make([]bool, len(u.devices))
		for i, d := range u.devices {
			live[i] = d.live()
		}
		t.add(u.book.tally(live))
		for _, d := range u.devices {
			if d.live() {
				unanswered += d.unanswered()
			}
		}
	}
	r := workerResult{
		Progress:           st.progress("done"),
		Unacked:            st.pushes.Load() - st.acks.Load(),
		SkippedAcks:        st.skippedAcks.Load(),
		HeadMismatches:     st.headMismatches.Load(),
		BusySkips:          st.busySkips.Load(),
		ExpectedDeliveries: t.Expected,
		Lost:               t.Lost,
		UnackedDelivered:   t.Unacked,
		PeerPullsPending:   unanswered,
		PeerPullPages:      st.peerPullPages.Load(),
		PeerPullAnswers:    st.peerPullAnswers.Load(),
		WriteErrors:        st.writeErrors.Load(),
		OpenAtEnd:          openAtEnd,
		ConnectSeconds:     connectSecs,
		TrafficSeconds:     trafficSecs,
		ErrorCodes:         st.errors.snapshot(),
		CloseCodes:         st.closes.snapshot(),
		ConnectFailures:    st.connectFailures.snapshot(),
		Anomalies:          st.anomalies.snapshot(),
		Interrupted:        interrupted,
	}
	var err error
	if r.AckHist, err = encodeHist(st.ackLat.merged()); err == nil {
		if r.DeliveryHist, err = encodeHist(st.deliveryLat.merged()); err == nil {
			r.PeerPullHist, err = encodeHist(st.peerPullLat.merged())
		}
	}
	if err != nil {
		r.Anomalies["histogram_encoding"]++
	}
	return r
}

// sleepCtx sleeps for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
