package soak

import (
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds, from 1 µs to 5 minutes, with
// three significant digits.
const (
	histLowest  = 1
	histHighest = 300_000_000
	histDigits  = 3
	histShards  = 8
)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(histLowest, histHighest, histDigits) }

// shardedHist spreads recording over a few locked histograms, so that
// thousands of reader goroutines share a handful of locks rather than one
// (a histogram per connection would cost 100+ KiB each).
type shardedHist struct {
	shards [histShards]struct {
		mu sync.Mutex
		h  *hdrhistogram.Histogram
	}
}

func newShardedHist() *shardedHist {
	s := &shardedHist{}
	for i := range s.shards {
		s.shards[i].h = newHist()
	}
	return s
}

// record adds a latency in nanoseconds; shard picks the lock.
func (s *shardedHist) record(shard int, ns int64) {
	us := min(max(ns/1000, histLowest), histHighest)
	sh := &s.shards[shard%histShards]
	sh.mu.Lock()
	_ = sh.h.RecordValue(us) // clamped into range above, so it cannot fail
	sh.mu.Unlock()
}

func (s *shardedHist) merged() *hdrhistogram.Histogram {
	out := newHist()
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		out.Merge(sh.h)
		sh.mu.Unlock()
	}
	return out
}

// tallies counts events that are rare in a healthy run (errors, closes,
// anomalies), keyed by a short label.
type tallies struct {
	mu sync.Mutex
	m  map[string]int64
}

func (t *tallies) add(key string, n int64) {
	t.mu.Lock()
	if t.m == nil {
		t.m = make(map[string]int64)
	}
	t.m[key] += n
	t.mu.Unlock()
}

func (t *tallies) snapshot() map[string]int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]int64, len(t.m))
	maps.Copy(out, t.m)
	return out
}

func (t *tallies) total() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var n int64
	for _, v := range t.m {
		n += v
	}
	return n
}

// stats is one worker's live account of the run.
type stats struct {
	connects, connectErrors, open  atomic.Int64
	pushes, acks, skippedAcks      atomic.Int64
	deliveries, firstDeliveries    atomic.Int64
	expectedSoFar                  atomic.Int64
	duplicated, reordered, foreign atomic.Int64
	peerPulls, peerPullsAnswered   atomic.Int64
	peerPullPages, peerPullAnswers atomic.Int64 // pages received; pages sent
	writeErrors                    atomic.Int64
	// Sequenced stores: pushes refused with head_mismatch (not counted in
	// pushes), and pacing ticks skipped because a push was still in flight.
	headMismatches, busySkips atomic.Int64

	errors, closes, connectFailures, anomalies tallies

	ackLat, deliveryLat, peerPullLat *shardedHist
}

func newStats() *stats {
	return &stats{ackLat: newShardedHist(), deliveryLat: newShardedHist(), peerPullLat: newShardedHist()}
}

// Progress is a snapshot of a worker's counters, streamed to the parent and
// summed into the progress line.
type Progress struct {
	Phase             string `json:"phase"`
	Connections       int64  `json:"connections"`
	Open              int64  `json:"open"`
	ConnectErrors     int64  `json:"connect_errors"`
	Pushes            int64  `json:"pushes"`
	Acks              int64  `json:"acks"`
	Deliveries        int64  `json:"deliveries"`
	Duplicated        int64  `json:"duplicated"`
	Reordered         int64  `json:"reordered"`
	Foreign           int64  `json:"foreign"`
	PeerPulls         int64  `json:"peer_pulls"`
	PeerPullsAnswered int64  `json:"peer_pulls_answered"`
	Errors            int64  `json:"errors"`
	Closes            int64  `json:"closes"`
}

func (s *stats) progress(phase string) Progress {
	return Progress{
		Phase:             phase,
		Connections:       s.connects.Load(),
		Open:              s.open.Load(),
		ConnectErrors:     s.connectErrors.Load(),
		Pushes:            s.pushes.Load(),
		Acks:              s.acks.Load(),
		Deliveries:        s.deliveries.Load(),
		Duplicated:        s.duplicated.Load(),
		Reordered:         s.reordered.Load(),
		Foreign:           s.foreign.Load(),
		PeerPulls:         s.peerPulls.Load(),
		PeerPullsAnswered: s.peerPullsAnswered.Load(),
		Errors:            s.errors.total(),
		Closes:            s.closes.total(),
	}
}

func (p *Progress) add(o Progress) {
	p.Connections += o.Connections
	p.Open += o.Open
	p.ConnectErrors += o.ConnectErrors
	p.Pushes += o.Pushes
	p.Acks += o.Acks
	p.Deliveries += o.Deliveries
	p.Duplicated += o.Duplicated
	p.Reordered += o.Reordered
	p.Foreign += o.Foreign
	p.PeerPulls += o.PeerPulls
	p.PeerPullsAnswered += o.PeerPullsAnswered
	p.Errors += o.Errors
	p.Closes += o.Closes
}

// workerResult is what a worker reports at the end: its counters, its
// end-of-run tally and its histograms, V2-encoded so that the parent can
// merge them exactly.
type workerResult struct {
	Progress
	Unacked            int64            `json:"unacked"`
	SkippedAcks        int64            `json:"skipped_acks"`
	HeadMismatches     int64            `json:"head_mismatches"`
	BusySkips          int64            `json:"busy_skips"`
	ExpectedDeliveries int64            `json:"expected_deliveries"`
	Lost               int64            `json:"lost"`
	UnackedDelivered   int64            `json:"unacked_delivered"`
	PeerPullsPending   int64            `json:"peer_pulls_unanswered"`
	PeerPullPages      int64            `json:"peer_pull_pages"`
	PeerPullAnswers    int64            `json:"peer_pull_pages_sent"`
	WriteErrors        int64            `json:"write_errors"`
	OpenAtEnd          int64            `json:"open_at_end"`
	ConnectSeconds     float64          `json:"connect_seconds"`
	TrafficSeconds     float64          `json:"traffic_seconds"`
	ErrorCodes         map[string]int64 `json:"error_codes"`
	CloseCodes         map[string]int64 `json:"close_codes"`
	ConnectFailures    map[string]int64 `json:"connect_failures"`
	Anomalies          map[string]int64 `json:"anomalies"`
	AckHist            []byte           `json:"ack_hist"`
	DeliveryHist       []byte           `json:"delivery_hist"`
	PeerPullHist       []byte           `json:"peer_pull_hist"`
	Interrupted        bool             `json:"interrupted"`
	ClientCPUSeconds   float64          `json:"client_cpu_seconds"`
}

func encodeHist(h *hdrhistogram.Histogram) ([]byte, error) {
	b, err := h.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
	if err != nil {
		return nil, fmt.Errorf("encode histogram: %w", err)
	}
	return b, nil
}

// Result is the summary of a whole run, printed as the JSON line.
type Result struct {
	Pass     bool     `json:"pass"`
	Failures []string `json:"failures"`

	Users       int     `json:"users"`
	Devices     int     `json:"devices"`
	Procs       int     `json:"procs"`
	Idle        bool    `json:"idle"`
	DurationSec float64 `json:"duration_seconds"`

	Connections       int64            `json:"connections"`
	ConnectErrors     int64            `json:"connect_errors"`
	ConnectFailures   map[string]int64 `json:"connect_failures"`
	ConnectsPerSecond float64          `json:"connects_per_second"`
	OpenAtEnd         int64            `json:"open_at_end"`

	Pushes             int64   `json:"pushes"`
	Acks               int64   `json:"acks"`
	Unacked            int64   `json:"unacked"`
	AchievedPushRate   float64 `json:"achieved_push_rate"`
	ExpectedDeliveries int64   `json:"expected_deliveries"`
	Deliveries         int64   `json:"deliveries"`
	Lost               int64   `json:"lost"`
	Duplicated         int64   `json:"duplicated"`
	Reordered          int64   `json:"reordered"`
	Foreign            int64   `json:"foreign"`
	UnackedDelivered   int64   `json:"unacked_delivered"`
	HeadMismatches     int64   `json:"head_mismatches"`
	BusySkips          int64   `json:"pushes_skipped_busy"`

	PeerPulls           int64 `json:"peer_pulls"`
	PeerPullsAnswered   int64 `json:"peer_pulls_answered"`
	PeerPullsUnanswered int64 `json:"peer_pulls_unanswered"`
	PeerPullPages       int64 `json:"peer_pull_pages"`
	PeerPullPagesSent   int64 `json:"peer_pull_pages_sent"`

	AckP50      int64 `json:"ack_p50_us"`
	AckP90      int64 `json:"ack_p90_us"`
	AckP99      int64 `json:"ack_p99_us"`
	AckP999     int64 `json:"ack_p999_us"`
	AckMax      int64 `json:"ack_max_us"`
	DeliverP50  int64 `json:"delivery_p50_us"`
	DeliverP90  int64 `json:"delivery_p90_us"`
	DeliverP99  int64 `json:"delivery_p99_us"`
	DeliverP999 int64 `json:"delivery_p999_us"`
	DeliverMax  int64 `json:"delivery_max_us"`
	PullP50     int64 `json:"peer_pull_p50_us"`
	PullP99     int64 `json:"peer_pull_p99_us"`
	PullMax     int64 `json:"peer_pull_max_us"`

	Errors      map[string]int64 `json:"errors"`
	Closes      map[string]int64 `json:"closes"`
	Anomalies   map[string]int64 `json:"anomalies"`
	WriteErrors int64            `json:"write_errors"`
	Interrupted bool             `json:"interrupted"`

	ServerPeakRSS        *int64   `json:"server_peak_rss_bytes,omitempty"`
	ServerPeakGoroutines *int64   `json:"server_peak_goroutines,omitempty"`
	ServerStartRSS       *int64   `json:"server_start_rss_bytes,omitempty"`
	ServerHeldRSS        *int64   `json:"server_held_rss_bytes,omitempty"`
	ServerRSSPerConn     *int64   `json:"server_rss_bytes_per_connection,omitempty"`
	ServerCPUSeconds     *float64 `json:"server_cpu_seconds,omitempty"`
	ServerCPUPerDelivery *float64 `json:"server_cpu_us_per_delivery,omitempty"`
	ServerSamples        int      `json:"server_samples,omitempty"`
	// ServerNodes are each node's figures when more than one was sampled;
	// the Server fields above are then sums over the nodes (peaks of the
	// sums, taken at the seconds when every node answered).
	ServerNodes   []NodeFigures `json:"server_nodes,omitempty"`
	RelayExitCode *int          `json:"relay_exit_code,omitempty"`
	// RelayExitCodes are the nodes' exit codes with --spawn-nodes;
	// RelayExitCode is then the first that is not 0, or 0.
	RelayExitCodes   []int   `json:"relay_exit_codes,omitempty"`
	ClientCPUSeconds float64 `json:"client_cpu_seconds"`
}

// merge folds the workers' results into r.
func (r *Result) merge(ws []workerResult) error {
	ack, del, pull := newHist(), newHist(), newHist()
	r.Errors, r.Closes, r.Anomalies, r.ConnectFailures = map[string]int64{}, map[string]int64{}, map[string]int64{}, map[string]int64{}
	for i := range ws {
		w := &ws[i]
		r.Connections += w.Connections
		r.ConnectErrors += w.ConnectErrors
		r.OpenAtEnd += w.OpenAtEnd
		r.Pushes += w.Pushes
		r.Acks += w.Acks
		r.Unacked += w.Unacked
		r.ExpectedDeliveries += w.ExpectedDeliveries
		r.Deliveries += w.Deliveries
		r.Lost += w.Lost
		r.Duplicated += w.Duplicated
		r.Reordered += w.Reordered
		r.Foreign += w.Foreign
		r.UnackedDelivered += w.UnackedDelivered
		r.HeadMismatches += w.HeadMismatches
		r.BusySkips += w.BusySkips
		r.PeerPulls += w.PeerPulls
		r.PeerPullsAnswered += w.PeerPullsAnswered
		r.PeerPullsUnanswered += w.PeerPullsPending
		r.PeerPullPages += w.PeerPullPages
		r.PeerPullPagesSent += w.PeerPullAnswers
		r.WriteErrors += w.WriteErrors
		r.Interrupted = r.Interrupted || w.Interrupted
		r.ClientCPUSeconds += w.ClientCPUSeconds
		// Workers run side by side, so their rates add up.
		if w.TrafficSeconds > 0 {
			r.AchievedPushRate += float64(w.Pushes) / w.TrafficSeconds
		}
		if w.ConnectSeconds > 0 {
			r.ConnectsPerSecond += float64(w.Connections) / w.ConnectSeconds
		}
		for dst, src := range map[*map[string]int64]map[string]int64{
			&r.Errors: w.ErrorCodes, &r.Closes: w.CloseCodes, &r.Anomalies: w.Anomalies, &r.ConnectFailures: w.ConnectFailures,
		} {
			for k, v := range src {
				(*dst)[k] += v
			}
		}
		for dst, src := range map[*hdrhistogram.Histogram][]byte{ack: w.AckHist, del: w.DeliveryHist, pull: w.PeerPullHist} {
			if len(src) == 0 {
				continue
			}
			h, err := hdrhistogram.Decode(src)
			if err != nil {
				return fmt.Errorf("worker %d: decode histogram: %w", i, err)
			}
			dst.Merge(h)
		}
	}
	q := func(h *hdrhistogram.Histogram, p float64) int64 {
		if h.TotalCount() == 0 {
			return 0
		}
		return h.ValueAtPercentile(p)
	}
	r.AckP50, r.AckP90, r.AckP99, r.AckP999, r.AckMax = q(ack, 50), q(ack, 90), q(ack, 99), q(ack, 99.9), ack.Max()
	r.DeliverP50, r.DeliverP90, r.DeliverP99, r.DeliverP999, r.DeliverMax = q(del, 50), q(del, 90), q(del, 99), q(del, 99.9), del.Max()
	r.PullP50, r.PullP99, r.PullMax = q(pull, 50), q(pull, 99), pull.Max()
	return nil
}

// judge decides pass or fail: every promise of the relay that the run could
// observe must have held.
func (r *Result) judge(expectedConns int64) {
	r.Failures = []string{}
	fail := func(cond bool, format string, args ...any) {
		if cond {
			r.Failures = append(r.Failures, fmt.Sprintf(format, args...))
		}
	}
	fail(r.Lost > 0, "lost %d deliveries", r.Lost)
	fail(r.Duplicated > 0, "duplicated %d deliveries", r.Duplicated)
	fail(r.Reordered > 0, "reordered %d deliveries", r.Reordered)
	fail(r.Foreign > 0, "%d foreign messages", r.Foreign)
	fail(r.Unacked > 0, "%d pushes never acked", r.Unacked)
	fail(r.UnackedDelivered > 0, "%d unacked pushes were delivered", r.UnackedDelivered)
	fail(r.PeerPullsUnanswered > 0, "%d peer_pulls unanswered", r.PeerPullsUnanswered)
	fail(r.ConnectErrors > 0, "%d connections failed to open", r.ConnectErrors)
	fail(r.Connections < expectedConns, "%d of %d connections opened", r.Connections, expectedConns)
	fail(len(r.Closes) > 0, "server closed connections: %v", sortedPairs(r.Closes))
	fail(len(r.Errors) > 0, "server errors: %v", sortedPairs(r.Errors))
	fail(len(r.Anomalies) > 0, "protocol anomalies: %v", sortedPairs(r.Anomalies))
	fail(r.WriteErrors > 0, "%d writes failed", r.WriteErrors)
	fail(r.RelayExitCode != nil && *r.RelayExitCode != 0, "relay exited with %d", deref(r.RelayExitCode))
	fail(r.Interrupted, "interrupted")
	r.Pass = len(r.Failures) == 0
}

func deref(p *int) int {
	if p == nil {
		return 0
	}
	return *p
}

func sortedPairs(m map[string]int64) string {
	keys := slices.Sorted(maps.Keys(m))
	s := ""
	for i, k := range keys {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("%s=%d", k, m[k])
	}
	return s
}
