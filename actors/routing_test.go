package actors

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestPushGoesToEveryOtherBoundPeerThenAck(t *testing.T) {
	sys := newTestSystem(t, nil)
	a, b, c := open(t, sys, "alice", "a"), open(t, sys, "alice", "b"), open(t, sys, "alice", "c")
	for _, d := range []*device{a, b, c} {
		d.bind()
	}
	unbound := open(t, sys, "alice", "x")
	stranger := open(t, sys, "bob", "a")
	stranger.bind()

	msg := a.push(1)
	b.expectBytes(msg)
	c.expectBytes(msg)
	if p := payload(t, a.expect("ack")); p["receivedCount"] != 1.0 {
		t.Fatalf("ack %v, want receivedCount 1", p)
	}
	unbound.nothingQueued()
	stranger.nothingQueued()

	// The device bound last is a recipient like the others.
	msg = b.push(2)
	a.expectBytes(msg)
	c.expectBytes(msg)
	unbound.expectBytes(msg)
	b.expect("ack")
}

func TestBindingTheSameClientAndSessionReplacesTheOlderConnection(t *testing.T) {
	sys := newTestSystem(t, nil)
	old, peer := open(t, sys, "alice", "a"), open(t, sys, "alice", "p")
	old.bind()
	peer.bind()
	newer := open(t, sys, "alice", "a")
	newer.bind()
	old.expectClose(4002)

	msg := peer.push(1)
	newer.expectBytes(msg)
	peer.expect("ack")

	// The identity is fixed by the first message.
	newer.send(`{"type":"pull","clientId":"other","sessionId":"s-a","timestamp":1,"payload":{}}`)
	newer.expectError("client_mismatch")
}

func TestPeerPullEndsPerTargetWithHasMoreFalse(t *testing.T) {
	sys := newTestSystem(t, nil)
	a, b, c := open(t, sys, "alice", "a"), open(t, sys, "alice", "b"), open(t, sys, "alice", "c")
	for _, d := range []*device{a, b, c} {
		d.bind()
	}
	req := a.peerPull("r1", "")
	b.expectBytes(req)
	c.expectBytes(req)

	a.expectBytes(b.peerPullResponse("r1", false))
	a.expectBytes(c.peerPullResponse("r1", true))
	a.expectBytes(c.peerPullResponse("r1", false))
	// Both targets are done: the request is no longer pending.
	b.peerPullResponse("r1", false)
	b.expectError("unknown_request")
	c.peerPullResponse("r1", true)
	c.expectError("unknown_request")

	// A targeted request reaches only its target.
	b.expectBytes(a.peerPull("r2", "b"))
	c.nothingQueued()
	c.peerPullResponse("r2", false)
	c.expectError("unknown_request")
	a.expectBytes(b.peerPullResponse("r2", false))
}

func TestPeerPullWithNobodyToAskIsAnsweredByTheServer(t *testing.T) {
	sys := newTestSystem(t, nil)
	a := open(t, sys, "alice", "a")
	a.bind()
	a.peerPull("r1", "")
	if p := payload(t, a.expect("peer_pull_response")); p["requestId"] != "r1" || p["hasMore"] != false {
		t.Fatalf("server's answer %v, want requestId r1 and hasMore false", p)
	}
}

func TestPeerPullEndsWhenTheRequesterLeaves(t *testing.T) {
	sys := newTestSystem(t, nil)
	a, b := open(t, sys, "alice", "a"), open(t, sys, "alice", "b")
	a.bind()
	b.bind()
	b.expectBytes(a.peerPull("r1", ""))
	a.leave()
	b.peerPullResponse("r1", true)
	b.expectError("unknown_request")
}

func TestPeerPullTimesOut(t *testing.T) {
	sys := newTestSystem(t, func(c *Config) {
		c.PeerPullTimeout = 20 * time.Millisecond
		c.Rate, c.RateBurst = 1e9, 1<<30 // the loop below sends as fast as it is answered
	})
	a, b := open(t, sys, "alice", "a"), open(t, sys, "alice", "b")
	a.bind()
	b.bind()
	b.expectBytes(a.peerPull("r1", ""))
	// Responses reach the requester until the request times out; then the
	// target is told it is unknown.
	deadline := time.After(10 * time.Second)
	for {
		b.peerPullResponse("r1", true)
		select {
		case w := <-a.sock.events:
			if w.op != ws.OpText {
				t.Fatalf("requester got %+v", w)
			}
			continue
		case w := <-b.sock.events:
			b.sock.events <- w // put back for expectError
			b.expectError("unknown_request")
			return
		case <-deadline:
			t.Fatal("the request never timed out")
		}
	}
}

func TestSlowConsumerIsClosedWith4003AndOthersGoOn(t *testing.T) {
	sys := newTestSystem(t, func(c *Config) { c.SendQueueMessages = 4 })
	a, b := open(t, sys, "alice", "a"), open(t, sys, "alice", "b")
	a.bind()
	b.bind()
	b.sock.stalled.Store(true)
	for i := range 10 {
		a.push(i + 1)
		a.expect("ack")
	}
	close(b.sock.release)
	b.expectClose(4003)
	if n := value(t, sys.metrics.SlowConsumers); n != 1 {
		t.Errorf("slow consumer count %v, want 1", n)
	}
	a.push(11)
	a.expect("ack")
}

func TestRoomFailureClosesItsConnectionsWith1011(t *testing.T) {
	var failing atomic.Bool
	sys := newTestSystem(t, func(c *Config) {
		c.FaultHook = func(actor, user string) {
			if actor == "room" && user == "alice" && failing.Load() {
				panic("injected room failure")
			}
		}
	})
	a, b := open(t, sys, "alice", "a"), open(t, sys, "alice", "b")
	a.bind()
	b.bind()
	other := open(t, sys, "bob", "a")
	other.bind()
	failing.Store(true)
	a.push(1)
	a.expectClose(1011)
	b.expectClose(1011)
	failing.Store(false)

	// Another user's room is untouched.
	other.push(1)
	other.expect("ack")
	// Once the directory has forgotten the failed room, the user's next
	// connection gets a fresh one.
	for deadline := time.Now().Add(10 * time.Second); value(t, sys.metrics.Rooms) != 1; {
		if time.Now().After(deadline) {
			t.Fatalf("rooms = %v, want 1 (bob's)", value(t, sys.metrics.Rooms))
		}
		time.Sleep(time.Millisecond) // polling a condition
	}
	c := open(t, sys, "alice", "c")
	c.bind()
	c.push(1)
	c.expect("ack")
}

func TestDirectoryFailureKeepsRoomsAndCounts(t *testing.T) {
	sys := newTestSystem(t, func(c *Config) {
		c.MaxConnsPerUser = 3
		c.FaultHook = func(actor, user string) {
			if actor == "directory" && user == "mallory" {
				panic("injected directory failure")
			}
		}
	})
	a, b := open(t, sys, "alice", "a"), open(t, sys, "alice", "b")
	a.bind()
	b.bind()
	if _, err := sys.Admit(context.Background(), "mallory"); !errors.Is(err, errAdmitFailed) {
		t.Fatalf("admission that fails: %v, want errAdmitFailed", err)
	}
	msg := a.push(1)
	b.expectBytes(msg)
	a.expect("ack")
	// Alice's count survived: a third connection fits, a fourth does not.
	c := open(t, sys, "alice", "c")
	c.bind()
	if _, err := sys.Admit(context.Background(), "alice"); !errors.Is(err, ErrUserLimit) {
		t.Fatalf("fourth admission: %v, want ErrUserLimit", err)
	}
}

func TestSequencedStoreRouting(t *testing.T) {
	sys := newTestSystem(t, nil)
	a, b, c := open(t, sys, "alice", "a"), open(t, sys, "alice", "b"), open(t, sys, "alice", "c")
	for _, d := range []*device{a, b, c} {
		d.bind()
	}
	if p := payload(t, a.joinStore("st")); p["storeId"] != "st" {
		t.Fatalf("join answered %v", p)
	}
	b.joinStore("st")

	// Only the store's joined peers get its pushes; the ack names the new head.
	msg := a.storePush("st", 0, 1)
	b.expectBytes(msg)
	p := payload(t, a.expect("ack"))
	if head, _ := p["head"].(map[string]any); p["storeId"] != "st" || head["eventNumber"] != 1.0 {
		t.Fatalf("ack %v, want storeId st and head 1", p)
	}
	c.nothingQueued()

	// A push that does not follow the head is refused, and nobody gets it.
	a.storePush("st", 0, 1)
	a.expectError("head_mismatch")
	// A device that has not joined cannot push to the store.
	c.storePush("st", 1, 2)
	c.expectError("invalid_message")
	b.nothingQueued()

	msg = b.storePush("st", 1, 2)
	a.expectBytes(msg)
	b.expect("ack")
}

// value reads a gauge or counter.
func value(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	if d.Gauge != nil {
		return d.Gauge.GetValue()
	}
	return d.Counter.GetValue()
}
