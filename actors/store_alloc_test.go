package actors

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// TestSequencedPushAllocations guards a sequenced push: besides what a
// plain push costs, the store's part of the message, the store id and the
// new head's two ids are copied out of the frame (the head keeper keeps
// the ids), and the room's request to the keeper is reused.
func TestSequencedPushAllocations(t *testing.T) {
	if testing.Short() {
		t.Skip("measures allocations over many pushes")
	}
	const peers, pushes = 4, 20000
	sys := newBenchSystem(t)
	socks, sessions := openBound(t, sys, peers+1, "st")
	frames := make([][]byte, pushes)
	for i := range frames {
		frames[i] = frameOf(fmt.Sprintf(`{"type":"push","clientId":"c0","sessionId":"s0","timestamp":1,"payload":{"storeId":"st","events":[{"eventName":"e","eventNumber":%d,"parentEventNumber":%d,"clientId":"c0","sessionId":"s0","timestamp":1,"data":{"k":"v"}}]}}`, i+1, i))
	}
	expectFrames(socks, pushes)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	now := time.Now()
	for _, f := range frames {
		sessions[0].Text(f, now)
	}
	awaitFrames(t, socks, pushes, time.Minute)
	runtime.ReadMemStats(&after)
	var accepted dto.Metric
	if err := sys.metrics.store.pushAccepted.Write(&accepted); err != nil || accepted.GetCounter().GetValue() != pushes {
		t.Fatalf("%v of %d pushes accepted (%v)", accepted.GetCounter().GetValue(), pushes, err)
	}
	perPush := float64(after.Mallocs-before.Mallocs) / pushes
	t.Logf("%.2f allocations per sequenced push to %d peers", perPush, peers)
	if perPush > 7 && !raceEnabled {
		t.Errorf("%.2f allocations per sequenced push to %d peers; the path should need about five", perPush, peers)
	}
}

// BenchmarkSequencedFanOut is BenchmarkRoomFanOut for pushes to a
// sequenced store joined by every peer, heads in memory: the difference is
// the head check, a round trip from the room to the head keeper.
func BenchmarkSequencedFanOut(b *testing.B) {
	for _, n := range []int{1, 4} {
		b.Run(fmt.Sprintf("peers=%d", n), func(b *testing.B) {
			sys := newBenchSystem(b)
			socks, sessions := openBound(b, sys, n+1, "st")
			frames := make([][]byte, b.N)
			for i := range frames {
				frames[i] = frameOf(fmt.Sprintf(`{"type":"push","clientId":"c0","sessionId":"s0","timestamp":1733644800000,"payload":{"storeId":"st","events":[{"eventName":"todo.created","eventNumber":%d,"parentEventNumber":%d,"clientId":"c0","sessionId":"s0","timestamp":1733644800000,"data":{"id":"3f1c","text":"Buy milk and eggs on the way home from work","completed":false}}]}}`, i+1, i))
			}
			expectFrames(socks, int64(b.N))
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				sessions[0].Text(frames[i], time.Now())
			}
			awaitFrames(b, socks, int64(b.N), 30*time.Second)
		})
	}
}
