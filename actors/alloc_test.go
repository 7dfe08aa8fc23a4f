package actors

import (
	"runtime"
	"testing"
	"time"
)

// TestRelayedPushAllocations guards the hot path: a push read by the
// session, fanned out by the room to four peers and written by five
// connection actors (four relays and the ack) may allocate its inbound
// message and little else; the frame buffer is the reader's and not counted
// here. Counted over many pushes, so that allocations the actor runtime
// makes now and then (a goroutine for a mailbox that went idle) average out.
func TestRelayedPushAllocations(t *testing.T) {
	if testing.Short() {
		t.Skip("measures allocations over many pushes")
	}
	const peers, pushes = 4, 20000
	sys := newBenchSystem(t)
	socks, sessions := openBound(t, sys, peers+1, "")
	push := `{"type":"push","clientId":"c0","sessionId":"s0","timestamp":1,"payload":{"events":[{"eventName":"e","eventNumber":1,"clientId":"c0","sessionId":"s0","timestamp":1,"data":{"k":"v"}}]}}`
	frames := make([][]byte, pushes)
	for i := range frames {
		frames[i] = frameOf(push)
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
	perPush := float64(after.Mallocs-before.Mallocs) / pushes
	t.Logf("%.2f allocations per relayed push to %d peers", perPush, peers)
	if perPush > 3 && !raceEnabled {
		t.Errorf("%.2f allocations per relayed push to %d peers; the path should need about one", perPush, peers)
	}
}
