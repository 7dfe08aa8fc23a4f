package integration

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/livestore-relay/livestore-relay/test/relaytest"
	"github.com/livestore-relay/livestore-relay/transport"
)

// wireExpectServerPeerPullResponse receives the server's own answer to a
// peer_pull nobody could take and checks it to the letter.
func wireExpectServerPeerPullResponse(t *testing.T, c *relaytest.Client, requestID string, before int64) {
	t.Helper()
	m := c.Expect("peer_pull_response")
	wireExpectServerEnvelope(t, m, before)
	var p map[string]json.RawMessage
	if err := json.Unmarshal(m.Payload, &p); err != nil {
		t.Fatalf("payload of %s: %v", m.Raw, err)
	}
	var id string
	if err := json.Unmarshal(p["requestId"], &id); err != nil || id != requestID {
		t.Errorf("%s: requestId %s, want %q", m.Raw, p["requestId"], requestID)
	}
	if len(p) != 3 || string(p["events"]) != "[]" || string(p["hasMore"]) != "false" {
		t.Errorf("%s: payload must be exactly {requestId, events: [], hasMore: false}", m.Raw)
	}
}

// wireExpectRelayedSet receives len(sent) messages of type typ on c, in any
// order, and fails unless they are exactly the messages sent.
func wireExpectRelayedSet(t *testing.T, c *relaytest.Client, typ string, sent ...[]byte) {
	t.Helper()
	left := append([][]byte(nil), sent...)
	for range sent {
		m := c.Expect(typ)
		found := false
		for i, b := range left {
			if bytes.Equal(m.Raw, b) {
				left = append(left[:i], left[i+1:]...)
				found = true
				break
			}
		}
		if !found {
			t.Fatalf("%s: got %s, which is none of the messages sent", c.ClientID, m.Raw)
		}
	}
}

func TestPeerPullIsForwardedByteForByteToEveryOtherClient(t *testing.T) {
	s := relaytest.Start(t)
	laptop := wireDialAs(t, s, "alice", "laptop", "tab-1")
	laptop2 := wireDialAs(t, s, "alice", "laptop", "tab-2")
	phone := s.Dial(t, "alice", "phone")
	tabletA := wireDialAs(t, s, "alice", "tablet", "a")
	tabletB := wireDialAs(t, s, "alice", "tablet", "b")
	wireBindAll(laptop, laptop2, phone, tabletA, tabletB)
	desktop := s.Dial(t, "alice", "desktop") // never bound before the request
	wireAwaitConnections(t, s, 6)

	sent := laptop.Send(laptop.Envelope("peer_pull", map[string]any{
		"requestId": "req-1", "sinceTimestamp": 1733640000000, "retentionDays": 30, "hint": []any{"kept"},
	}))
	for _, target := range []*relaytest.Client{phone, tabletA, tabletB} {
		wireExpectRelayed(t, target, "peer_pull", sent)
	}
	// Not to other sessions of the requester's client, not back to the
	// requester, and not to a connection that was not bound.
	wireQuietAll(laptop, laptop2)
	desktop.Bind()

	// Every target answers; every answer reaches the requester.
	r1 := wireSendPeerPullResponse(phone, "req-1", false, phone.Event("p"))
	r2 := wireSendPeerPullResponse(tabletA, "req-1", false, tabletA.Event("a"))
	r3 := wireSendPeerPullResponse(tabletB, "req-1", false)
	wireExpectRelayedSet(t, laptop, "peer_pull_response", r1, r2, r3)
	wireQuietAll(laptop, laptop2, desktop)

	// Every target has finished: the request is over.
	wireSendPeerPullResponse(phone, "req-1", false)
	phone.ExpectError("unknown_request")
	laptop.ExpectQuiet()
}

func TestPeerPullWithTargetGoesOnlyToThatClient(t *testing.T) {
	s := relaytest.Start(t)
	laptop := s.Dial(t, "alice", "laptop")
	phone := s.Dial(t, "alice", "phone")
	tabletA := wireDialAs(t, s, "alice", "tablet", "a")
	tabletB := wireDialAs(t, s, "alice", "tablet", "b")
	wireBindAll(laptop, phone, tabletA, tabletB)

	sent := wireSendPeerPull(laptop, "req-1", map[string]any{"targetClientId": "tablet"})
	wireExpectRelayed(t, tabletA, "peer_pull", sent)
	wireExpectRelayed(t, tabletB, "peer_pull", sent)
	phone.ExpectQuiet()

	// phone was not asked.
	wireSendPeerPullResponse(phone, "req-1", false, phone.Event(1))
	phone.ExpectError("unknown_request")
	laptop.ExpectQuiet()

	a := wireSendPeerPullResponse(tabletA, "req-1", false, tabletA.Event(1))
	wireExpectRelayed(t, laptop, "peer_pull_response", a)
	b := wireSendPeerPullResponse(tabletB, "req-1", false)
	wireExpectRelayed(t, laptop, "peer_pull_response", b)
	laptop.ExpectQuiet()
}

func TestPeerPullWithNobodyToAskIsAnsweredByTheServer(t *testing.T) {
	cases := []struct {
		name   string
		setup  func(t *testing.T, s *relaytest.Server)
		target string
	}{
		{"alone", func(*testing.T, *relaytest.Server) {}, ""},
		{"only other sessions of the same client", func(t *testing.T, s *relaytest.Server) {
			wireDialAs(t, s, "alice", "laptop", "other-tab").Bind()
		}, ""},
		{"only a connection that is not bound", func(t *testing.T, s *relaytest.Server) {
			s.Dial(t, "alice", "phone")
			wireAwaitConnections(t, s, 2)
		}, ""},
		{"target not online", func(t *testing.T, s *relaytest.Server) {
			s.Dial(t, "alice", "phone").Bind()
		}, "tablet"},
		{"target of 128 bytes not online", func(t *testing.T, s *relaytest.Server) {
			s.Dial(t, "alice", "phone").Bind()
		}, strings.Repeat("t", 128)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := relaytest.Start(t)
			laptop := s.Dial(t, "alice", "laptop")
			laptop.Bind()
			tc.setup(t, s)
			extra := map[string]any{}
			if tc.target != "" {
				extra["targetClientId"] = tc.target
			}
			requestID := `req "1" \ é`
			before := time.Now().UnixMilli()
			wireSendPeerPull(laptop, requestID, extra)
			wireExpectServerPeerPullResponse(t, laptop, requestID, before)
			laptop.ExpectQuiet()

			// Not pending: the id may be used again at once, and a device
			// that joins later cannot answer it.
			wireSendPeerPull(laptop, requestID, extra)
			wireExpectServerPeerPullResponse(t, laptop, requestID, before)
			late := s.Dial(t, "alice", "tablet")
			late.Bind()
			wireSendPeerPullResponse(late, requestID, false, late.Event(1))
			late.ExpectError("unknown_request")
			laptop.ExpectQuiet()
		})
	}
}

func TestServerAnsweredPeerPullsAreNotCountedAsPending(t *testing.T) {
	s := relaytest.Start(t, relaytest.WithLimits(func(c *transport.Config) { c.Actors.MaxPendingPeerPulls = 1 }))
	laptop := s.Dial(t, "alice", "laptop")
	laptop.Bind()
	for _, id := range []string{"r1", "r2", "r3"} {
		before := time.Now().UnixMilli()
		wireSendPeerPull(laptop, id, nil)
		wireExpectServerPeerPullResponse(t, laptop, id, before)
	}
	phone := s.Dial(t, "alice", "phone")
	phone.Bind()
	sent := wireSendPeerPull(laptop, "r4", nil)
	wireExpectRelayed(t, phone, "peer_pull", sent)
	laptop.ExpectQuiet()
}

func TestDuplicatePendingRequestIDIsInvalid(t *testing.T) {
	s := relaytest.Start(t)
	laptop := s.Dial(t, "alice", "laptop")
	phone := s.Dial(t, "alice", "phone")
	tablet := s.Dial(t, "alice", "tablet")
	wireBindAll(laptop, phone, tablet)

	first := wireSendPeerPull(laptop, "r1", map[string]any{"targetClientId": "phone"})
	wireExpectRelayed(t, phone, "peer_pull", first)

	for _, extra := range []map[string]any{
		{"targetClientId": "phone"},
		{"targetClientId": "tablet"},
		nil,
	} {
		wireSendPeerPull(laptop, "r1", extra)
		laptop.ExpectError("invalid_message")
		laptop.ExpectQuiet()
		wireQuietAll(phone, tablet)
	}

	// The same id on another connection is another request.
	other := wireSendPeerPull(tablet, "r1", map[string]any{"targetClientId": "laptop"})
	wireExpectRelayed(t, laptop, "peer_pull", other)
	toTablet := wireSendPeerPullResponse(laptop, "r1", false)
	wireExpectRelayed(t, tablet, "peer_pull_response", toTablet)

	// Once answered, laptop's r1 is no longer pending and may be reused.
	toLaptop := wireSendPeerPullResponse(phone, "r1", false)
	wireExpectRelayed(t, laptop, "peer_pull_response", toLaptop)
	again := wireSendPeerPull(laptop, "r1", map[string]any{"targetClientId": "phone"})
	wireExpectRelayed(t, phone, "peer_pull", again)
}

func TestTooManyPendingPeerPullsIsLimitExceeded(t *testing.T) {
	s := relaytest.Start(t, relaytest.WithLimits(func(c *transport.Config) { c.Actors.MaxPendingPeerPulls = 2 }))
	laptop := s.Dial(t, "alice", "laptop")
	phone := s.Dial(t, "alice", "phone")
	tablet := s.Dial(t, "alice", "tablet")
	wireBindAll(laptop, phone, tablet)

	for _, id := range []string{"r1", "r2"} {
		sent := wireSendPeerPull(laptop, id, map[string]any{"targetClientId": "phone"})
		wireExpectRelayed(t, phone, "peer_pull", sent)
	}
	wireSendPeerPull(laptop, "r3", map[string]any{"targetClientId": "phone"})
	laptop.ExpectError("limit_exceeded")
	laptop.ExpectQuiet()
	phone.ExpectQuiet()

	// The limit is per connection: tablet may still ask.
	sent := wireSendPeerPull(tablet, "t1", map[string]any{"targetClientId": "phone"})
	wireExpectRelayed(t, phone, "peer_pull", sent)

	// A finished request frees its place.
	resp := wireSendPeerPullResponse(phone, "r1", false)
	wireExpectRelayed(t, laptop, "peer_pull_response", resp)
	sent = wireSendPeerPull(laptop, "r3", map[string]any{"targetClientId": "phone"})
	wireExpectRelayed(t, phone, "peer_pull", sent)
}

func TestInvalidPeerPullIsRejected(t *testing.T) {
	long := strings.Repeat("x", 129)
	cases := []struct {
		name    string
		payload map[string]any
	}{
		{"no sinceTimestamp", map[string]any{"requestId": "r"}},
		{"negative sinceTimestamp", map[string]any{"requestId": "r", "sinceTimestamp": -1}},
		{"fractional sinceTimestamp", map[string]any{"requestId": "r", "sinceTimestamp": 0.5}},
		{"sinceTimestamp as a string", map[string]any{"requestId": "r", "sinceTimestamp": "0"}},
		{"no requestId", map[string]any{"sinceTimestamp": 0}},
		{"empty requestId", map[string]any{"requestId": "", "sinceTimestamp": 0}},
		{"requestId of 129 bytes", map[string]any{"requestId": long, "sinceTimestamp": 0}},
		{"requestId a number", map[string]any{"requestId": 1, "sinceTimestamp": 0}},
		{"negative retentionDays", map[string]any{"requestId": "r", "sinceTimestamp": 0, "retentionDays": -1}},
		{"fractional retentionDays", map[string]any{"requestId": "r", "sinceTimestamp": 0, "retentionDays": 1.5}},
		{"empty targetClientId", map[string]any{"requestId": "r", "sinceTimestamp": 0, "targetClientId": ""}},
		{"targetClientId a number", map[string]any{"requestId": "r", "sinceTimestamp": 0, "targetClientId": 2}},
		{"targetClientId of 129 bytes", map[string]any{"requestId": "r", "sinceTimestamp": 0, "targetClientId": long}},
		{"no payload", nil},
	}
	s := relaytest.Start(t)
	laptop := s.Dial(t, "alice", "laptop")
	phone := s.Dial(t, "alice", "phone")
	wireBindAll(laptop, phone)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := laptop.Envelope("peer_pull", tc.payload)
			if tc.payload == nil {
				delete(env, "payload")
			}
			laptop.Send(env)
			laptop.ExpectError("invalid_message")
			laptop.ExpectQuiet()
			phone.ExpectQuiet()
		})
	}

	// The largest valid values are forwarded.
	t.Run("limits", func(t *testing.T) {
		id := strings.Repeat("r", 128)
		sent := wireSendPeerPull(laptop, id, map[string]any{"retentionDays": 0, "sinceTimestamp": 0})
		wireExpectRelayed(t, phone, "peer_pull", sent)
		resp := wireSendPeerPullResponse(phone, id, false)
		wireExpectRelayed(t, laptop, "peer_pull_response", resp)
	})
}

func TestPeerPullResponseIsRoutedByteForByteToTheRequesterOnly(t *testing.T) {
	s := relaytest.Start(t)
	laptop := wireDialAs(t, s, "alice", "laptop", "tab-1")
	laptop2 := wireDialAs(t, s, "alice", "laptop", "tab-2")
	phone := s.Dial(t, "alice", "phone")
	tablet := s.Dial(t, "alice", "tablet")
	wireBindAll(laptop, laptop2, phone, tablet)

	pull := wireSendPeerPull(laptop, "req-1", nil)
	wireExpectRelayed(t, phone, "peer_pull", pull)
	wireExpectRelayed(t, tablet, "peer_pull", pull)

	events := []map[string]any{phone.Event(map[string]any{"text": "Earlier message ☃"}), phone.Event(nil)}
	events[1]["clientId"], events[1]["sessionId"] = "desktop", "session-old"
	resp := phone.Send(phone.Envelope("peer_pull_response", map[string]any{
		"requestId": "req-1", "events": events, "hasMore": false, "cursor": "kept",
	}))
	wireExpectRelayed(t, laptop, "peer_pull_response", resp)
	wireQuietAll(laptop, laptop2, tablet)
}

func TestPeerPullResponsePagesArriveInOrderUntilHasMoreFalse(t *testing.T) {
	s := relaytest.Start(t)
	laptop := s.Dial(t, "alice", "laptop")
	phone := s.Dial(t, "alice", "phone")
	tablet := s.Dial(t, "alice", "tablet")
	wireBindAll(laptop, phone, tablet)

	pull := wireSendPeerPull(laptop, "req-1", nil)
	wireExpectRelayed(t, phone, "peer_pull", pull)
	wireExpectRelayed(t, tablet, "peer_pull", pull)

	var pages [][]byte
	for i := range 4 {
		pages = append(pages, wireSendPeerPullResponse(phone, "req-1", i < 3, phone.Event(i)))
	}
	for _, p := range pages {
		wireExpectRelayed(t, laptop, "peer_pull_response", p)
	}

	// phone has finished; tablet, still a target, keeps paging.
	wireSendPeerPullResponse(phone, "req-1", true, phone.Event(5))
	phone.ExpectError("unknown_request")
	laptop.ExpectQuiet()
	t1 := wireSendPeerPullResponse(tablet, "req-1", true, tablet.Event(1))
	wireExpectRelayed(t, laptop, "peer_pull_response", t1)
	t2 := wireSendPeerPullResponse(tablet, "req-1", false)
	wireExpectRelayed(t, laptop, "peer_pull_response", t2)
	wireSendPeerPullResponse(tablet, "req-1", false)
	tablet.ExpectError("unknown_request")
	laptop.ExpectQuiet()
}

func TestInvalidPeerPullResponseIsRejectedAndTheRequestStaysPending(t *testing.T) {
	long := strings.Repeat("x", 129)
	cases := []struct {
		name    string
		code    string
		payload func(c *relaytest.Client) map[string]any
	}{
		{"no hasMore", "invalid_message", func(*relaytest.Client) map[string]any {
			return map[string]any{"requestId": "req-1", "events": []any{}}
		}},
		{"hasMore as a string", "invalid_message", func(*relaytest.Client) map[string]any {
			return map[string]any{"requestId": "req-1", "events": []any{}, "hasMore": "false"}
		}},
		{"hasMore null", "invalid_message", func(*relaytest.Client) map[string]any {
			return map[string]any{"requestId": "req-1", "events": []any{}, "hasMore": nil}
		}},
		{"no requestId", "invalid_message", func(*relaytest.Client) map[string]any {
			return map[string]any{"events": []any{}, "hasMore": false}
		}},
		{"empty requestId", "invalid_message", func(*relaytest.Client) map[string]any {
			return map[string]any{"requestId": "", "events": []any{}, "hasMore": false}
		}},
		{"requestId of 129 bytes", "invalid_message", func(*relaytest.Client) map[string]any {
			return map[string]any{"requestId": long, "events": []any{}, "hasMore": false}
		}},
		{"no events", "invalid_message", func(*relaytest.Client) map[string]any {
			return map[string]any{"requestId": "req-1", "hasMore": false}
		}},
		{"events not an array", "invalid_message", func(*relaytest.Client) map[string]any {
			return map[string]any{"requestId": "req-1", "events": map[string]any{}, "hasMore": false}
		}},
		{"invalid event", "invalid_message", func(c *relaytest.Client) map[string]any {
			ev := c.Event(1)
			delete(ev, "eventNumber")
			return map[string]any{"requestId": "req-1", "events": []any{ev}, "hasMore": false}
		}},
		{"invalid event over the limit", "invalid_message", func(c *relaytest.Client) map[string]any {
			ev := c.Event(1)
			delete(ev, "data")
			return map[string]any{"requestId": "req-1", "events": []any{c.Event(1), c.Event(2), ev}, "hasMore": false}
		}},
		{"too many events", "limit_exceeded", func(c *relaytest.Client) map[string]any {
			return map[string]any{"requestId": "req-1", "events": []any{c.Event(1), c.Event(2), c.Event(3)}, "hasMore": false}
		}},
	}
	s := relaytest.Start(t, relaytest.WithLimits(func(c *transport.Config) { c.Actors.MaxEventsPerPush = 2 }))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			laptop := s.Dial(t, "alice", "laptop")
			phone := s.Dial(t, "alice", "phone")
			wireBindAll(laptop, phone)
			pull := wireSendPeerPull(laptop, "req-1", nil)
			wireExpectRelayed(t, phone, "peer_pull", pull)

			phone.Send(phone.Envelope("peer_pull_response", tc.payload(phone)))
			phone.ExpectError(tc.code)
			phone.ExpectQuiet()
			laptop.ExpectQuiet()

			// A valid answer still goes through.
			resp := wireSendPeerPullResponse(phone, "req-1", false, phone.Event(1), phone.Event(2))
			wireExpectRelayed(t, laptop, "peer_pull_response", resp)
			laptop.Close()
			phone.Close()
		})
	}
}

func TestPeerPullResponseNobodyIsWaitingForIsUnknownRequest(t *testing.T) {
	t.Run("unknown requestId", func(t *testing.T) {
		s := relaytest.Start(t)
		laptop := s.Dial(t, "alice", "laptop")
		phone := s.Dial(t, "alice", "phone")
		wireBindAll(laptop, phone)
		pull := wireSendPeerPull(laptop, "req-1", nil)
		wireExpectRelayed(t, phone, "peer_pull", pull)

		wireSendPeerPullResponse(phone, "req-2", false, phone.Event(1))
		phone.ExpectError("unknown_request")
		laptop.ExpectQuiet()
	})

	t.Run("from the requester itself", func(t *testing.T) {
		s := relaytest.Start(t)
		laptop := s.Dial(t, "alice", "laptop")
		phone := s.Dial(t, "alice", "phone")
		wireBindAll(laptop, phone)
		pull := wireSendPeerPull(laptop, "req-1", nil)
		wireExpectRelayed(t, phone, "peer_pull", pull)

		wireSendPeerPullResponse(laptop, "req-1", false)
		laptop.ExpectError("unknown_request")
		laptop.ExpectQuiet()
	})

	t.Run("from a client the target excluded", func(t *testing.T) {
		s := relaytest.Start(t)
		laptop := s.Dial(t, "alice", "laptop")
		phone := s.Dial(t, "alice", "phone")
		tablet := s.Dial(t, "alice", "tablet")
		wireBindAll(laptop, phone, tablet)
		pull := wireSendPeerPull(laptop, "req-1", map[string]any{"targetClientId": "phone"})
		wireExpectRelayed(t, phone, "peer_pull", pull)

		wireSendPeerPullResponse(tablet, "req-1", false, tablet.Event(1))
		tablet.ExpectError("unknown_request")
		laptop.ExpectQuiet()
	})

	t.Run("from a session that bound after the request", func(t *testing.T) {
		s := relaytest.Start(t)
		laptop := s.Dial(t, "alice", "laptop")
		phone := wireDialAs(t, s, "alice", "phone", "first")
		wireBindAll(laptop, phone)
		pull := wireSendPeerPull(laptop, "req-1", nil)
		wireExpectRelayed(t, phone, "peer_pull", pull)

		// Same clientId as the target, but not asked.
		phone2 := wireDialAs(t, s, "alice", "phone", "second")
		phone2.Bind()
		wireSendPeerPullResponse(phone2, "req-1", false)
		phone2.ExpectError("unknown_request")
		laptop.ExpectQuiet()

		// The request is still pending for the one that was asked.
		resp := wireSendPeerPullResponse(phone, "req-1", false)
		wireExpectRelayed(t, laptop, "peer_pull_response", resp)
	})

	t.Run("from a target that already answered hasMore false", func(t *testing.T) {
		s := relaytest.Start(t)
		laptop := s.Dial(t, "alice", "laptop")
		phone := s.Dial(t, "alice", "phone")
		tablet := s.Dial(t, "alice", "tablet")
		wireBindAll(laptop, phone, tablet)
		pull := wireSendPeerPull(laptop, "req-1", nil)
		wireExpectRelayed(t, phone, "peer_pull", pull)
		wireExpectRelayed(t, tablet, "peer_pull", pull)

		resp := wireSendPeerPullResponse(phone, "req-1", false)
		wireExpectRelayed(t, laptop, "peer_pull_response", resp)
		// tablet keeps the request pending, but phone is done with it.
		wireSendPeerPullResponse(phone, "req-1", false)
		phone.ExpectError("unknown_request")
		wireSendPeerPullResponse(phone, "req-1", true)
		phone.ExpectError("unknown_request")
		laptop.ExpectQuiet()
	})

	t.Run("after the requester left", func(t *testing.T) {
		s := relaytest.Start(t)
		laptop := s.Dial(t, "alice", "laptop")
		phone := s.Dial(t, "alice", "phone")
		tablet := s.Dial(t, "alice", "tablet")
		wireBindAll(laptop, phone, tablet)
		pull := wireSendPeerPull(laptop, "req-1", nil)
		wireExpectRelayed(t, phone, "peer_pull", pull)
		wireExpectRelayed(t, tablet, "peer_pull", pull)
		first := wireSendPeerPullResponse(phone, "req-1", true, phone.Event(1))
		wireExpectRelayed(t, laptop, "peer_pull_response", first)

		laptop.Close()
		wireAwaitConnections(t, s, 2)
		wireSendPeerPullResponse(phone, "req-1", false, phone.Event(2))
		phone.ExpectError("unknown_request")
		wireSendPeerPullResponse(tablet, "req-1", false)
		tablet.ExpectError("unknown_request")
	})

	t.Run("after the only target left", func(t *testing.T) {
		s := relaytest.Start(t, relaytest.WithLimits(func(c *transport.Config) { c.Actors.MaxPendingPeerPulls = 1 }))
		laptop := s.Dial(t, "alice", "laptop")
		phone := s.Dial(t, "alice", "phone")
		tablet := s.Dial(t, "alice", "tablet")
		wireBindAll(laptop, phone, tablet)
		pull := wireSendPeerPull(laptop, "req-1", map[string]any{"targetClientId": "phone"})
		wireExpectRelayed(t, phone, "peer_pull", pull)

		phone.Close()
		wireAwaitConnections(t, s, 2)
		phone2 := s.Dial(t, "alice", "phone")
		phone2.Bind()
		wireSendPeerPullResponse(phone2, "req-1", false)
		phone2.ExpectError("unknown_request")
		wireSendPeerPullResponse(tablet, "req-1", false)
		tablet.ExpectError("unknown_request")
		laptop.ExpectQuiet()

		// The request is over: its id is free and its place too.
		again := wireSendPeerPull(laptop, "req-1", map[string]any{"targetClientId": "phone"})
		wireExpectRelayed(t, phone2, "peer_pull", again)
	})

	t.Run("after the timeout", func(t *testing.T) {
		s := relaytest.Start(t, relaytest.WithLimits(func(c *transport.Config) {
			c.Actors.PeerPullTimeout = 200 * time.Millisecond
			c.Actors.MaxPendingPeerPulls = 1
		}))
		laptop := s.Dial(t, "alice", "laptop")
		phone := s.Dial(t, "alice", "phone")
		wireBindAll(laptop, phone)
		pull := wireSendPeerPull(laptop, "req-1", nil)
		wireExpectRelayed(t, phone, "peer_pull", pull)

		// Keep answering with more to come until the server has forgotten
		// the request; every page before that reaches the requester.
		var forwarded [][]byte
		relaytest.Eventually(t, relaytest.Timeout, "the request to expire", func() bool {
			page := wireSendPeerPullResponse(phone, "req-1", true, phone.Event(len(forwarded)))
			phone.Send(phone.Envelope("pull", map[string]any{}))
			m := phone.Recv()
			if m.Type == "error" && m.Code == "unknown_request" {
				phone.Expect("pull_response")
				return true
			}
			if m.Type != "pull_response" {
				t.Fatalf("phone: got %s, want unknown_request or pull_response", m.Raw)
			}
			forwarded = append(forwarded, page)
			return false
		})
		for _, p := range forwarded {
			wireExpectRelayed(t, laptop, "peer_pull_response", p)
		}
		laptop.ExpectQuiet()

		// The expired request no longer holds the requester's only place.
		again := wireSendPeerPull(laptop, "req-1", nil)
		wireExpectRelayed(t, phone, "peer_pull", again)
	})
}

func TestTargetLeavingDoesNotEndTheRequestForTheOthers(t *testing.T) {
	s := relaytest.Start(t)
	laptop := s.Dial(t, "alice", "laptop")
	phone := s.Dial(t, "alice", "phone")
	tablet := s.Dial(t, "alice", "tablet")
	wireBindAll(laptop, phone, tablet)
	pull := wireSendPeerPull(laptop, "req-1", nil)
	wireExpectRelayed(t, phone, "peer_pull", pull)
	wireExpectRelayed(t, tablet, "peer_pull", pull)

	phone.Close()
	wireAwaitConnections(t, s, 2)
	resp := wireSendPeerPullResponse(tablet, "req-1", false, tablet.Event(1))
	wireExpectRelayed(t, laptop, "peer_pull_response", resp)

	// tablet was the last target: the request is over.
	again := wireSendPeerPull(laptop, "req-1", nil)
	wireExpectRelayed(t, tablet, "peer_pull", again)
}
