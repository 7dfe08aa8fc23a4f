package integration

import (
	"testing"
	"time"

	"github.com/livestore-relay/livestore-relay/test/relaytest"
)

// Two users whose devices share clientIds: only the token's user separates
// them.
func TestUsersNeverReceiveEachOthersTraffic(t *testing.T) {
	s := relaytest.Start(t)
	aLaptop := s.Dial(t, "alice", "laptop")
	aPhone := s.Dial(t, "alice", "phone")
	bLaptop := s.Dial(t, "bob", "laptop")
	bPhone := s.Dial(t, "bob", "phone")
	bTablet := s.Dial(t, "bob", "tablet")
	wireBindAll(aLaptop, aPhone, bLaptop, bPhone, bTablet)
	bob := []*relaytest.Client{bLaptop, bPhone, bTablet}

	// onlinePeers lists only the user's own devices.
	wireExpectOnlinePeers(t, aLaptop, "phone")
	wireExpectOnlinePeers(t, aPhone, "laptop")
	wireExpectOnlinePeers(t, bLaptop, "phone", "tablet")
	wireExpectOnlinePeers(t, bTablet, "laptop", "phone")

	t.Run("push", func(t *testing.T) {
		sent := aLaptop.Push(aLaptop.Event("for alice only"))
		wireExpectRelayed(t, aPhone, "push", sent)
		aLaptop.Expect("ack")
		wireQuietAll(bob...)
	})
	t.Run("empty push", func(t *testing.T) {
		aLaptop.Push()
		aLaptop.Expect("ack")
		wireQuietAll(bob...)
	})
	t.Run("peer_pull", func(t *testing.T) {
		sent := wireSendPeerPull(aLaptop, "a-1", nil)
		wireExpectRelayed(t, aPhone, "peer_pull", sent)
		wireQuietAll(bob...)
		resp := wireSendPeerPullResponse(aPhone, "a-1", false, aPhone.Event(1))
		wireExpectRelayed(t, aLaptop, "peer_pull_response", resp)
		wireQuietAll(bob...)
	})
	t.Run("peer_pull to a clientId only the other user has online", func(t *testing.T) {
		before := time.Now().UnixMilli()
		wireSendPeerPull(aLaptop, "a-2", map[string]any{"targetClientId": "tablet"})
		wireExpectServerPeerPullResponse(t, aLaptop, "a-2", before)
		wireQuietAll(bob...)
		wireQuietAll(aPhone)
	})
	t.Run("errors", func(t *testing.T) {
		aLaptop.SendRaw([]byte("not json"))
		aLaptop.ExpectError("invalid_message")
		wireSendAs(aLaptop, "tablet", bTablet.SessionID, "push", map[string]any{"events": []any{aLaptop.Event(1)}})
		aLaptop.ExpectError("client_mismatch")
		wireQuietAll(bob...)
		wireQuietAll(aPhone)
	})
	t.Run("bob's traffic does not reach alice", func(t *testing.T) {
		sent := bTablet.Push(bTablet.Event("for bob only"))
		wireExpectRelayed(t, bLaptop, "push", sent)
		wireExpectRelayed(t, bPhone, "push", sent)
		bTablet.Expect("ack")
		pull := wireSendPeerPull(bTablet, "b-1", nil)
		wireExpectRelayed(t, bLaptop, "peer_pull", pull)
		wireExpectRelayed(t, bPhone, "peer_pull", pull)
		wireQuietAll(aLaptop, aPhone)
	})
}

func TestPeerPullResponseFromAnotherUserIsUnknownRequest(t *testing.T) {
	s := relaytest.Start(t)
	aLaptop := s.Dial(t, "alice", "laptop")
	aPhone := s.Dial(t, "alice", "phone")
	bPhone := s.Dial(t, "bob", "phone")
	bTablet := s.Dial(t, "bob", "tablet")
	wireBindAll(aLaptop, aPhone, bPhone, bTablet)

	pull := wireSendPeerPull(aLaptop, "req-1", nil)
	wireExpectRelayed(t, aPhone, "peer_pull", pull)

	// Bob's phone has alice's phone's clientId and knows the requestId.
	wireSendPeerPullResponse(bPhone, "req-1", false, bPhone.Event("leak"))
	bPhone.ExpectError("unknown_request")
	wireSendPeerPullResponse(bTablet, "req-1", true)
	bTablet.ExpectError("unknown_request")
	aLaptop.ExpectQuiet()

	// Alice's request is untouched by it.
	resp := wireSendPeerPullResponse(aPhone, "req-1", false)
	wireExpectRelayed(t, aLaptop, "peer_pull_response", resp)
}

func TestSameIdentityUnderAnotherUserDoesNotReplaceTheConnection(t *testing.T) {
	s := relaytest.Start(t)
	aLaptop := wireDialAs(t, s, "alice", "laptop", "shared-session")
	aPhone := s.Dial(t, "alice", "phone")
	wireBindAll(aLaptop, aPhone)

	bLaptop := wireDialAs(t, s, "bob", "laptop", "shared-session")
	wireExpectOnlinePeers(t, bLaptop)

	// alice's laptop is still open and still receives alice's pushes.
	sent := aPhone.Push(aPhone.Event(1))
	wireExpectRelayed(t, aLaptop, "push", sent)
	aPhone.Expect("ack")
	wireExpectOnlinePeers(t, aLaptop, "phone")
	bLaptop.ExpectQuiet()
}
