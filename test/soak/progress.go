package soak

import (
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// progressBoard holds the latest progress of each worker: read live from
// an in-process worker, or as last reported by a worker process.
type progressBoard struct {
	mu      sync.Mutex
	latest  []Progress
	sources []func() Progress
}

func newProgressBoard(n int) *progressBoard {
	return &progressBoard{latest: make([]Progress, n), sources: make([]func() Progress, n)}
}

func (b *progressBoard) attach(i int, src func() Progress) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sources[i] = src
}

func (b *progressBoard) set(i int, p Progress) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.latest[i] = p
}

// total sums the workers; the phase shown is the first worker's.
func (b *progressBoard) total() Progress {
	b.mu.Lock()
	defer b.mu.Unlock()
	var t Progress
	for i := range b.latest {
		p := b.latest[i]
		if b.sources[i] != nil {
			p = b.sources[i]()
		}
		if i == 0 {
			t.Phase = p.Phase
		}
		t.add(p)
	}
	return t
}

// isTerminal reports whether w is a character device, without a terminal
// library: the progress cadence is all that depends on it.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// startProgress prints a progress line at the configured interval until
// the returned function is called.
func startProgress(cfg *Config, b *progressBoard, smp *sampler, out io.Writer, start time.Time) (stop func()) {
	every := cfg.Progress
	if every == 0 {
		every = 10 * time.Second
		if isTerminal(out) {
			every = time.Second
		}
	}
	if every < 0 {
		return func() {}
	}
	want := int64(cfg.connsTotal())
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		var prev Progress
		prevAt := start
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				p := b.total()
				secs := now.Sub(prevAt).Seconds()
				line := fmt.Sprintf("soak %4.0fs %-7s conns %d/%d open %d | pushes %d (%.0f/s) acks %d | deliveries %d (%.0f/s) | peer_pulls %d/%d | dup %d reord %d foreign %d | errors %d closes %d connect_errors %d",
					now.Sub(start).Seconds(), p.Phase, p.Connections, want, p.Open,
					p.Pushes, float64(p.Pushes-prev.Pushes)/secs, p.Acks,
					p.Deliveries, float64(p.Deliveries-prev.Deliveries)/secs,
					p.PeerPullsAnswered, p.PeerPulls,
					p.Duplicated, p.Reordered, p.Foreign, p.Errors, p.Closes, p.ConnectErrors)
				if smp != nil {
					if s, ok := smp.latest(); ok {
						who := "relay"
						if n := len(smp.urls); n > 1 {
							who = fmt.Sprintf("%d relays", n) // sums over the nodes
						}
						line += fmt.Sprintf(" | %s rss %.0f MiB goroutines %.0f", who, s.RSS/(1<<20), s.Goroutines)
					}
				}
				fmt.Fprintln(out, line)
				prev, prevAt = p, now
			}
		}
	}()
	return func() { close(done); <-finished }
}

// writeSummary prints the result for a person.
func writeSummary(w io.Writer, r *Result) {
	verdict := "PASS"
	if !r.Pass {
		verdict = "FAIL: " + strings.Join(r.Failures, "; ")
	}
	fmt.Fprintf(w, "soak %s\n", verdict)
	fmt.Fprintf(w, "  connections  %d (%d errors %s), %.0f connects/s, %d open at end, %d procs\n",
		r.Connections, r.ConnectErrors, pairs(r.ConnectFailures), r.ConnectsPerSecond, r.OpenAtEnd, r.Procs)
	if !r.Idle {
		fmt.Fprintf(w, "  pushes       %d sent, %d acked, %d unacked, %.1f/s achieved\n", r.Pushes, r.Acks, r.Unacked, r.AchievedPushRate)
		if r.HeadMismatches > 0 || r.BusySkips > 0 {
			fmt.Fprintf(w, "  store        %d pushes refused with head_mismatch, %d not sent while one was in flight\n", r.HeadMismatches, r.BusySkips)
		}
		if r.ExpectedDeliveries == 0 && r.Deliveries > 0 {
			// Only devices connected to the end are checked for loss; none was
			// (the relay went away, or every device was closed).
			fmt.Fprintf(w, "  deliveries   %d, none checked for loss: no device stayed connected to the end; duplicated %d, reordered %d, foreign %d\n",
				r.Deliveries, r.Duplicated, r.Reordered, r.Foreign)
		} else {
			fmt.Fprintf(w, "  deliveries   %d of %d expected: lost %d, duplicated %d, reordered %d, foreign %d\n",
				r.Deliveries, r.ExpectedDeliveries, r.Lost, r.Duplicated, r.Reordered, r.Foreign)
		}
		fmt.Fprintf(w, "  peer_pulls   %d sent, %d answered, %d unanswered (%d pages in, %d out)\n",
			r.PeerPulls, r.PeerPullsAnswered, r.PeerPullsUnanswered, r.PeerPullPages, r.PeerPullPagesSent)
		fmt.Fprintf(w, "  ack µs       p50 %d  p90 %d  p99 %d  p99.9 %d  max %d\n", r.AckP50, r.AckP90, r.AckP99, r.AckP999, r.AckMax)
		fmt.Fprintf(w, "  delivery µs  p50 %d  p90 %d  p99 %d  p99.9 %d  max %d\n", r.DeliverP50, r.DeliverP90, r.DeliverP99, r.DeliverP999, r.DeliverMax)
		fmt.Fprintf(w, "  peer_pull µs p50 %d  p99 %d  max %d\n", r.PullP50, r.PullP99, r.PullMax)
	}
	fmt.Fprintf(w, "  errors %s  closes %s  anomalies %s\n", pairs(r.Errors), pairs(r.Closes), pairs(r.Anomalies))
	if r.ServerPeakRSS != nil {
		who := "relay       "
		if len(r.ServerNodes) > 1 {
			who = "relays (sum)"
		}
		fmt.Fprintf(w, "  %s peak RSS %.1f MiB (start %.1f MiB)", who, float64(*r.ServerPeakRSS)/(1<<20), float64(deref64(r.ServerStartRSS))/(1<<20))
		if r.ServerRSSPerConn != nil {
			fmt.Fprintf(w, ", %d B RSS per connection with %.0f MiB held", *r.ServerRSSPerConn, float64(deref64(r.ServerHeldRSS))/(1<<20))
		}
		if r.ServerPeakGoroutines != nil {
			fmt.Fprintf(w, ", peak goroutines %d", *r.ServerPeakGoroutines)
		}
		if r.ServerCPUSeconds != nil {
			fmt.Fprintf(w, ", CPU %.1f s", *r.ServerCPUSeconds)
		}
		if r.ServerCPUPerDelivery != nil {
			fmt.Fprintf(w, " (%.2f µs per delivered message)", *r.ServerCPUPerDelivery)
		}
		fmt.Fprintln(w)
	}
	for i, n := range r.ServerNodes {
		fmt.Fprintf(w, "    node %d     %s: peak RSS %.1f MiB, peak goroutines %d, peak connections %d",
			i, n.URL, float64(deref64(n.PeakRSS))/(1<<20), deref64(n.PeakGoroutines), deref64(n.PeakConns))
		if n.CPUSeconds != nil {
			fmt.Fprintf(w, ", CPU %.1f s", *n.CPUSeconds)
		}
		if n.Failures > 0 {
			fmt.Fprintf(w, ", %d samples failed", n.Failures)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "  client CPU   %.1f s over %.1f s\n", r.ClientCPUSeconds, r.DurationSec)
}

func deref64(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

func pairs(m map[string]int64) string {
	if len(m) == 0 {
		return "{}"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return "{" + strings.Join(parts, " ") + "}"
}
