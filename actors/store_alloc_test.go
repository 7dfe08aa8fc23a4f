package actors

import (
	"context"
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
	socks := make([]*countingSocket, peers+1)
	sessions := make([]*Session, peers+1)
	for i := range socks {
		socks[i] = &countingSocket{done: make(chan struct{}, 1)}
		adm, err := sys.Admit(context.Background(), "alice")
		if err != nil {
			t.Fatal(err)
		}
		sessions[i] = sys.Open(adm, socks[i], ConnInfo{})
		socks[i].target.Store(1)
		sessions[i].Text(frameOf(fmt.Sprintf(`{"type":"pull","clientId":"c%d","sessionId":"s%d","timestamp":1,"payload":{"storeId":"st","head":{"eventNumber":0}}}`, i, i)), time.Now())
		<-socks[i].done
	}
	frames := make([][]byte, pushes)
	for i := range frames {
		frames[i] = frameOf(fmt.Sprintf(`{"type":"push","clientId":"c0","sessionId":"s0","timestamp":1,"payload":{"storeId":"st","events":[{"eventName":"e","eventNumber":%d,"parentEventNumber":%d,"clientId":"c0","sessionId":"s0","timestamp":1,"data":{"k":"v"}}]}}`, i+1, i))
	}
	for _, s := range socks {
		s.frames.Store(0)
		s.target.Store(pushes)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	now := time.Now()
	for _, f := range frames {
		sessions[0].Text(f, now)
	}
	for _, s := range socks {
		select {
		case <-s.done:
		case <-time.After(time.Minute):
			t.Fatalf("only %d of %d frames written", s.frames.Load(), pushes)
		}
	}
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
