package integration

import (
	"net/http"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/coder/websocket"
	"github.com/gobwas/ws"

	"github.com/livestore-relay/livestore-relay/test/relaytest"
	"github.com/livestore-relay/livestore-relay/transport"
)

// supFailOnce starts a server whose actor named actor fails once, on the
// first message about user after arm is set.
func supFailOnce(t *testing.T, actor, user string) (s *relaytest.Server, arm *atomic.Bool) {
	arm = new(atomic.Bool)
	s = relaytest.Start(t, relaytest.WithLimits(func(c *transport.Config) {
		c.Actors.FaultHook = func(a, u string) {
			if a == actor && u == user && arm.CompareAndSwap(true, false) {
				panic("injected failure of the " + a)
			}
		}
	}))
	return s, arm
}

// supExpectRelay pushes from one device and checks that the other gets it.
func supExpectRelay(t *testing.T, from, to *relaytest.Client) {
	t.Helper()
	sent := from.Push(from.Event(map[string]string{"from": from.ClientID}))
	from.Expect("ack")
	wireExpectRelayed(t, to, "push", sent)
}

// TestDirectoryFailureKeepsEveryRoomAndConnection: when the directory
// fails, the admission it was handling is refused, and nothing else
// changes: every connection stays open and keeps relaying, and a new
// device joins its user's existing room.
func TestDirectoryFailureKeepsEveryRoomAndConnection(t *testing.T) {
	s, arm := supFailOnce(t, "directory", "trigger")
	alicePhone, aliceLaptop := s.Dial(t, "alice", "phone"), s.Dial(t, "alice", "laptop")
	bobPhone, bobLaptop := s.Dial(t, "bob", "phone"), s.Dial(t, "bob", "laptop")
	wireBindAll(alicePhone, aliceLaptop, bobPhone, bobLaptop)

	arm.Store(true)
	_, resp, err := s.DialWith(t, s.URL+"?token="+relaytest.Token(t, "trigger"), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("upgrade while the directory fails: %v, want a 503 refusal", err)
	}

	supExpectRelay(t, alicePhone, aliceLaptop)
	supExpectRelay(t, bobLaptop, bobPhone)
	tablet := s.Dial(t, "alice", "tablet")
	if peers := tablet.Bind().OnlinePeers; !slices.Equal(peers, []string{"laptop", "phone"}) {
		t.Fatalf("new device of alice sees peers %v, want [laptop phone]: not the room it had", peers)
	}
	supExpectRelay(t, tablet, alicePhone)
	aliceLaptop.Expect("push")
	s.Dial(t, "trigger", "phone").Bind()
	if got := s.Metric(t, "livestore_relay_rooms"); got != 3 {
		t.Fatalf("rooms = %v, want 3", got)
	}
	if got := s.Metric(t, "livestore_relay_closes_total", "code", "1011"); got != 0 {
		t.Fatalf("%v connections closed with 1011, want none", got)
	}
	wireQuietAll(alicePhone, aliceLaptop, tablet, bobPhone, bobLaptop)
}

// TestRoomFailureClosesItsConnectionsWith1011AndTheyReconnect: a room that
// fails closes every connection of its user with 1011, other users are not
// touched, and the devices that reconnect get a working room.
func TestRoomFailureClosesItsConnectionsWith1011AndTheyReconnect(t *testing.T) {
	s, arm := supFailOnce(t, "room", "carol")
	carolPhone, carolLaptop := s.Dial(t, "carol", "phone"), s.Dial(t, "carol", "laptop")
	davePhone, daveLaptop := s.Dial(t, "dave", "phone"), s.Dial(t, "dave", "laptop")
	wireBindAll(carolPhone, carolLaptop, davePhone, daveLaptop)

	arm.Store(true)
	carolPhone.Push(carolPhone.Event(map[string]string{"fails": "the room"}))
	carolPhone.ExpectClose(websocket.StatusInternalError)
	carolLaptop.ExpectClose(websocket.StatusInternalError)

	supExpectRelay(t, davePhone, daveLaptop)
	phone, laptop := s.Dial(t, "carol", "phone"), s.Dial(t, "carol", "laptop")
	wireBindAll(phone, laptop)
	supExpectRelay(t, phone, laptop)
	supExpectRelay(t, laptop, phone)
	relaytest.Eventually(t, relaytest.Timeout, "two rooms", func() bool {
		return s.Metric(t, "livestore_relay_rooms") == 2
	})
	wireQuietAll(phone, laptop, davePhone, daveLaptop)
}

// TestDeviceWhoseRoomFailedAsItJoinedGetsItsCloseAnswered: a connection
// whose room failed before it had joined is in no room; when the device
// closes, the server still answers, with 1011, and the device can connect
// again into a working room.
func TestDeviceWhoseRoomFailedAsItJoinedGetsItsCloseAnswered(t *testing.T) {
	s, arm := supFailOnce(t, "room", "erin")
	arm.Store(true)
	orphan := s.DialRaw(t, "erin", "phone") // its join makes the room fail
	relaytest.Eventually(t, relaytest.Timeout, "the failed room to be gone", func() bool {
		return s.Metric(t, "livestore_relay_rooms") == 0
	})
	closingPushesThenClose(t, orphan, 3, false)
	if end := orphan.ReadUntilClose(); end.Code != ws.StatusInternalServerError {
		t.Fatalf("device closing in a failed room: close %d (%v) after %d messages, want 1011", end.Code, end.Err, len(end.Messages))
	}
	phone, laptop := s.Dial(t, "erin", "phone"), s.Dial(t, "erin", "laptop")
	wireBindAll(phone, laptop)
	supExpectRelay(t, phone, laptop)
}
