package integration

// Frames, envelopes, push and pull (contract §3 and §4).
//
// Error codes provoked by the tests of this file and of identity_test.go,
// peerpull_test.go and isolation_test.go: invalid_message, unsupported_type,
// client_mismatch, unknown_request, limit_exceeded. rate_limited and
// internal_error are provoked by the rate limit and failure tests.

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/livestore-relay/livestore-relay/test/relaytest"
	"github.com/livestore-relay/livestore-relay/transport"
)

// wireDialAs connects user's device clientID with the given session.
func wireDialAs(t *testing.T, s *relaytest.Server, user, clientID, sessionID string) *relaytest.Client {
	t.Helper()
	c := s.Dial(t, user, clientID)
	c.SessionID = sessionID
	return c
}

// wireBindAll binds every client, in order.
func wireBindAll(cs ...*relaytest.Client) {
	for _, c := range cs {
		c.Bind()
	}
}

// wireQuietAll proves that none of the clients has anything waiting.
func wireQuietAll(cs ...*relaytest.Client) {
	for _, c := range cs {
		c.ExpectQuiet()
	}
}

// wireExpectRelayed receives the next message of c and fails unless it is a typ
// carrying exactly the bytes sent.
func wireExpectRelayed(t *testing.T, c *relaytest.Client, typ string, sent []byte) relaytest.Msg {
	t.Helper()
	m := c.Expect(typ)
	if !bytes.Equal(m.Raw, sent) {
		t.Fatalf("%s: relayed bytes differ:\n sent %s\n got  %s", c.ClientID, sent, m.Raw)
	}
	return m
}

// wireEnvelope builds a message of c and lets edit change it before it is sent.
func wireEnvelope(c *relaytest.Client, typ string, payload any, edit func(env map[string]any)) map[string]any {
	env := c.Envelope(typ, payload)
	if edit != nil {
		edit(env)
	}
	return env
}

// wireSendAs sends a message on c's connection that claims another identity.
func wireSendAs(c *relaytest.Client, clientID, sessionID, typ string, payload any) []byte {
	env := c.Envelope(typ, payload)
	env["clientId"], env["sessionId"] = clientID, sessionID
	return c.Send(env)
}

// wireSendPeerPull sends a peer_pull for requestID since 0, with extra payload
// members, and returns the bytes sent.
func wireSendPeerPull(c *relaytest.Client, requestID string, extra map[string]any) []byte {
	p := map[string]any{"requestId": requestID, "sinceTimestamp": 0}
	maps.Copy(p, extra)
	return c.Send(c.Envelope("peer_pull", p))
}

// wireSendPeerPullResponse answers requestID with events and returns the bytes sent.
func wireSendPeerPullResponse(c *relaytest.Client, requestID string, hasMore bool, events ...map[string]any) []byte {
	if events == nil {
		events = []map[string]any{}
	}
	return c.Send(c.Envelope("peer_pull_response", map[string]any{
		"requestId": requestID, "events": events, "hasMore": hasMore,
	}))
}

// wireSendBinary sends b as one binary message.
func wireSendBinary(t *testing.T, c *relaytest.Client, b []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), relaytest.Timeout)
	defer cancel()
	if err := c.Conn.Write(ctx, websocket.MessageBinary, b); err != nil {
		t.Fatalf("send binary: %v", err)
	}
}

// wireTopLevel decodes the top-level members of a message.
func wireTopLevel(t *testing.T, m relaytest.Msg) map[string]json.RawMessage {
	t.Helper()
	var top map[string]json.RawMessage
	if err := json.Unmarshal(m.Raw, &top); err != nil {
		t.Fatalf("message %s: %v", m.Raw, err)
	}
	return top
}

// wireExpectServerEnvelope fails unless m carries the server's envelope: clientId
// "server", an empty sessionId and a timestamp in ms within a second of the
// interval [before, now].
func wireExpectServerEnvelope(t *testing.T, m relaytest.Msg, before int64) {
	t.Helper()
	top := wireTopLevel(t, m)
	if got := string(top["clientId"]); got != `"server"` {
		t.Errorf("%s: clientId = %s, want \"server\"", m.Raw, got)
	}
	if got := string(top["sessionId"]); got != `""` {
		t.Errorf("%s: sessionId = %s, want \"\"", m.Raw, got)
	}
	var ts int64
	if err := json.Unmarshal(top["timestamp"], &ts); err != nil {
		t.Errorf("%s: timestamp is not an integer: %v", m.Raw, err)
		return
	}
	after := time.Now().UnixMilli()
	if ts < before-1000 || ts > after+1000 {
		t.Errorf("%s: timestamp %d is not the server's time in ms (between %d and %d)", m.Raw, ts, before, after)
	}
}

// wireExpectAck receives the ack of a push and checks its counts.
func wireExpectAck(t *testing.T, c *relaytest.Client, count int, lastTimestamp int64) {
	t.Helper()
	ack := c.Expect("ack")
	var n int
	var last int64
	ack.Field(t, "receivedCount", &n)
	ack.Field(t, "lastTimestamp", &last)
	if n != count || last != lastTimestamp {
		t.Fatalf("%s: ack %s, want receivedCount %d and lastTimestamp %d", c.ClientID, ack.Raw, count, lastTimestamp)
	}
}

// wireOnlinePeers pulls and returns the onlinePeers of the answer, failing
// unless the member is a JSON array.
func wireOnlinePeers(t *testing.T, c *relaytest.Client) []string {
	t.Helper()
	m := c.Bind()
	raw, ok := wireTopLevel(t, m)["onlinePeers"]
	if !ok || !bytes.HasPrefix(raw, []byte("[")) {
		t.Fatalf("%s: pull_response %s: onlinePeers is not an array", c.ClientID, m.Raw)
	}
	return m.OnlinePeers
}

func wireExpectOnlinePeers(t *testing.T, c *relaytest.Client, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	if got := wireOnlinePeers(t, c); !slices.Equal(got, want) {
		t.Fatalf("%s/%s: onlinePeers = %q, want %q", c.ClientID, c.SessionID, got, want)
	}
}

// wireAwaitConnections waits until the server counts n open connections. It
// counts a connection from the moment it joins its user's room until it has
// left it, so this awaits both a silent new connection and a closed one.
func wireAwaitConnections(t *testing.T, s *relaytest.Server, n int) {
	t.Helper()
	relaytest.Eventually(t, relaytest.Timeout, "the count of open connections", func() bool {
		return s.Metric(t, "livestore_relay_connections") == float64(n)
	})
}

func TestInvalidPushIsAnsweredWithOneErrorAndNeitherRelayedNorAcked(t *testing.T) {
	long := strings.Repeat("a", 129)
	cases := []struct {
		name string
		edit func(env, ev map[string]any)
	}{
		{"event without eventName", func(_, ev map[string]any) { delete(ev, "eventName") }},
		{"empty eventName", func(_, ev map[string]any) { ev["eventName"] = "" }},
		{"eventName not a string", func(_, ev map[string]any) { ev["eventName"] = 7 }},
		{"event without eventNumber", func(_, ev map[string]any) { delete(ev, "eventNumber") }},
		{"negative eventNumber", func(_, ev map[string]any) { ev["eventNumber"] = -1 }},
		{"fractional eventNumber", func(_, ev map[string]any) { ev["eventNumber"] = 1.5 }},
		{"eventNumber as a string", func(_, ev map[string]any) { ev["eventNumber"] = "3" }},
		{"event without clientId", func(_, ev map[string]any) { delete(ev, "clientId") }},
		{"event clientId not a string", func(_, ev map[string]any) { ev["clientId"] = 5 }},
		{"event without sessionId", func(_, ev map[string]any) { delete(ev, "sessionId") }},
		{"event sessionId null", func(_, ev map[string]any) { ev["sessionId"] = nil }},
		{"event without timestamp", func(_, ev map[string]any) { delete(ev, "timestamp") }},
		{"fractional event timestamp", func(_, ev map[string]any) { ev["timestamp"] = 1733644800000.5 }},
		{"event timestamp as a string", func(_, ev map[string]any) { ev["timestamp"] = "1733644800000" }},
		{"event without data", func(_, ev map[string]any) { delete(ev, "data") }},
		{"event not an object", func(env, _ map[string]any) { env["payload"] = map[string]any{"events": []any{1}} }},
		{"second event invalid", func(env, ev map[string]any) {
			bad := maps.Clone(ev)
			delete(bad, "eventName")
			env["payload"] = map[string]any{"events": []any{ev, bad}}
		}},
		{"events not an array", func(env, ev map[string]any) { env["payload"] = map[string]any{"events": ev} }},
		{"events null", func(env, _ map[string]any) { env["payload"] = map[string]any{"events": nil} }},
		{"payload without events", func(env, _ map[string]any) { env["payload"] = map[string]any{} }},
		{"no payload", func(env, _ map[string]any) { delete(env, "payload") }},
		{"payload null", func(env, _ map[string]any) { env["payload"] = nil }},
		{"payload an array", func(env, ev map[string]any) { env["payload"] = []any{ev} }},
		{"no timestamp", func(env, _ map[string]any) { delete(env, "timestamp") }},
		{"fractional timestamp", func(env, _ map[string]any) { env["timestamp"] = 1733644800000.5 }},
		{"timestamp as a string", func(env, _ map[string]any) { env["timestamp"] = "1733644800000" }},
		{"no clientId", func(env, _ map[string]any) { delete(env, "clientId") }},
		{"empty clientId", func(env, _ map[string]any) { env["clientId"] = "" }},
		{"clientId not a string", func(env, _ map[string]any) { env["clientId"] = 1 }},
		// An identifier over its limit makes the message invalid before its
		// identity is compared with the connection's.
		{"clientId of 129 bytes", func(env, _ map[string]any) { env["clientId"] = long }},
		{"no sessionId", func(env, _ map[string]any) { delete(env, "sessionId") }},
		{"empty sessionId", func(env, _ map[string]any) { env["sessionId"] = "" }},
		{"sessionId of 129 bytes", func(env, _ map[string]any) { env["sessionId"] = long }},
		{"clientId server", func(env, _ map[string]any) { env["clientId"] = "server" }},
	}
	s := relaytest.Start(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			laptop := s.Dial(t, "alice", "laptop")
			phone := s.Dial(t, "alice", "phone")
			wireBindAll(laptop, phone)

			ev := laptop.Event(map[string]any{"text": "hi"})
			env := laptop.Envelope("push", map[string]any{"events": []any{ev}})
			tc.edit(env, ev)
			laptop.Send(env)

			laptop.ExpectError("invalid_message")
			laptop.ExpectQuiet() // one error, and no ack
			phone.ExpectQuiet()  // not relayed

			// The connection stays usable.
			sent := laptop.Push(laptop.Event(1))
			wireExpectRelayed(t, phone, "push", sent)
			laptop.Expect("ack")
			laptop.Close()
			phone.Close()
		})
	}
}

func TestPushAcceptsEveryValueTheContractAllows(t *testing.T) {
	s := relaytest.Start(t)
	laptop := s.Dial(t, "alice", "laptop")
	phone := s.Dial(t, "alice", "phone")
	wireBindAll(laptop, phone)

	// Events may come from other devices' history, carry any data (null
	// included), number 0, empty ids and any integer timestamp; members the
	// relay does not know are kept.
	events := []map[string]any{
		{"eventName": "a", "eventNumber": 0, "clientId": "", "sessionId": "", "timestamp": -5, "data": nil},
		{"eventName": "b", "eventNumber": 9007199254740993, "clientId": "desktop", "sessionId": "old", "timestamp": 0, "data": false, "extra": []any{1}},
		{"eventName": "ü", "eventNumber": 2, "clientId": "laptop", "sessionId": "x", "timestamp": 42, "data": "s"},
	}
	env := laptop.Envelope("push", map[string]any{"events": events, "note": "kept"})
	env["extension"] = map[string]any{"k": "v"}
	sent := laptop.Send(env)

	wireExpectRelayed(t, phone, "push", sent)
	wireExpectAck(t, laptop, 3, 42)
}

func TestPushIdentifiersAreLimitedTo128Bytes(t *testing.T) {
	s := relaytest.Start(t)
	phone := s.Dial(t, "alice", "phone")
	phone.Bind()

	// 64 two-byte characters are 128 bytes; one more byte is too many.
	at := strings.Repeat("é", 64)
	over := at + "a"

	bad := s.Dial(t, "alice", over)
	bad.Push(bad.Event(1))
	bad.ExpectError("invalid_message")
	bad.SessionID = over
	bad.ClientID = "tablet"
	bad.Push(bad.Event(1))
	bad.ExpectError("invalid_message")
	phone.ExpectQuiet()

	good := wireDialAs(t, s, "alice", at, at)
	sent := good.Push(good.Event(1))
	wireExpectRelayed(t, phone, "push", sent)
	good.Expect("ack")
	wireExpectOnlinePeers(t, phone, at)
}

func TestPushOverTheEventLimit(t *testing.T) {
	s := relaytest.Start(t, relaytest.WithLimits(func(c *transport.Config) { c.Actors.MaxEventsPerPush = 3 }))
	laptop := s.Dial(t, "alice", "laptop")
	phone := s.Dial(t, "alice", "phone")
	wireBindAll(laptop, phone)

	t.Run("only over the limit is limit_exceeded", func(t *testing.T) {
		laptop.Push(laptop.Event(1), laptop.Event(2), laptop.Event(3), laptop.Event(4))
		laptop.ExpectError("limit_exceeded")
		laptop.ExpectQuiet()
		phone.ExpectQuiet()
	})
	t.Run("invalid and over the limit is invalid_message", func(t *testing.T) {
		bad := laptop.Event(4)
		delete(bad, "data")
		laptop.Push(laptop.Event(1), laptop.Event(2), laptop.Event(3), bad)
		laptop.ExpectError("invalid_message")
		laptop.ExpectQuiet()
		phone.ExpectQuiet()
	})
	t.Run("at the limit is relayed and acked", func(t *testing.T) {
		e3 := laptop.Event(3)
		sent := laptop.Push(laptop.Event(1), laptop.Event(2), e3)
		wireExpectRelayed(t, phone, "push", sent)
		wireExpectAck(t, laptop, 3, e3["timestamp"].(int64))
	})
}

func TestEmptyPushIsAckedAndRelayedToNobody(t *testing.T) {
	s := relaytest.Start(t)
	laptop := s.Dial(t, "alice", "laptop")
	phone := s.Dial(t, "alice", "phone")
	laptop2 := wireDialAs(t, s, "alice", "laptop", "second-session")
	wireBindAll(laptop, phone, laptop2)

	before := time.Now().UnixMilli()
	laptop.Push()
	ack := laptop.Expect("ack")
	wireExpectServerEnvelope(t, ack, before)
	var p map[string]json.RawMessage
	if err := json.Unmarshal(ack.Payload, &p); err != nil {
		t.Fatal(err)
	}
	if string(p["receivedCount"]) != "0" || string(p["lastTimestamp"]) != "0" {
		t.Fatalf("ack %s, want receivedCount 0 and lastTimestamp 0", ack.Raw)
	}
	wireQuietAll(laptop, phone, laptop2)
}

func TestAckCarriesCountAndTimestampOfTheLastEvent(t *testing.T) {
	s := relaytest.Start(t)
	laptop := s.Dial(t, "alice", "laptop")
	laptop.Bind()

	// The last event's timestamp, not the largest one.
	events := []map[string]any{laptop.Event(1), laptop.Event(2), laptop.Event(3)}
	events[0]["timestamp"], events[1]["timestamp"], events[2]["timestamp"] = 300, 100, 200
	laptop.Push(events...)
	wireExpectAck(t, laptop, 3, 200)

	single := laptop.Event(1)
	single["timestamp"] = 1733644800123
	laptop.Push(single)
	wireExpectAck(t, laptop, 1, 1733644800123)
}

func TestPushIsRelayedToEveryOtherBoundConnectionOfTheUser(t *testing.T) {
	s := relaytest.Start(t)
	laptop := s.Dial(t, "alice", "laptop")
	phone := s.Dial(t, "alice", "phone")
	tablet := s.Dial(t, "alice", "tablet")
	laptop2 := wireDialAs(t, s, "alice", "laptop", "laptop-second-session")
	wireBindAll(laptop, phone, tablet, laptop2)

	for i, sender := range []*relaytest.Client{laptop, phone, tablet} {
		sent := sender.Push(sender.Event(map[string]any{"n": i}), sender.Event(nil))
		for _, other := range []*relaytest.Client{laptop, phone, tablet, laptop2} {
			if other != sender {
				wireExpectRelayed(t, other, "push", sent)
			}
		}
		sender.Expect("ack")
		// The sender does not receive its own push.
		sender.ExpectQuiet()
	}
}

func TestMalformedFramesAreAnsweredWithAnError(t *testing.T) {
	cases := []struct {
		name   string
		code   string
		binary bool
		raw    func(c *relaytest.Client) []byte
	}{
		{"binary frame holding a valid push", "invalid_message", true, func(c *relaytest.Client) []byte {
			b, _ := json.Marshal(c.Envelope("push", map[string]any{"events": []any{c.Event(1)}}))
			return b
		}},
		{"not JSON", "invalid_message", false, func(*relaytest.Client) []byte { return []byte("hello") }},
		{"truncated JSON", "invalid_message", false, func(c *relaytest.Client) []byte {
			b, _ := json.Marshal(c.Envelope("pull", map[string]any{}))
			return b[:len(b)-1]
		}},
		{"JSON array", "invalid_message", false, func(*relaytest.Client) []byte { return []byte(`[{"type":"pull"}]`) }},
		{"JSON string", "invalid_message", false, func(*relaytest.Client) []byte { return []byte(`"pull"`) }},
		{"two objects", "invalid_message", false, func(c *relaytest.Client) []byte {
			b, _ := json.Marshal(c.Envelope("pull", map[string]any{}))
			return append(b, b...)
		}},
		{"empty text", "invalid_message", false, func(*relaytest.Client) []byte { return []byte{} }},
		{"missing type", "invalid_message", false, func(c *relaytest.Client) []byte {
			env := c.Envelope("push", map[string]any{"events": []any{}})
			delete(env, "type")
			b, _ := json.Marshal(env)
			return b
		}},
		{"type a number", "invalid_message", false, func(c *relaytest.Client) []byte {
			b, _ := json.Marshal(wireEnvelope(c, "", map[string]any{}, func(env map[string]any) { env["type"] = 1 }))
			return b
		}},
		{"type null", "invalid_message", false, func(c *relaytest.Client) []byte {
			b, _ := json.Marshal(wireEnvelope(c, "", map[string]any{}, func(env map[string]any) { env["type"] = nil }))
			return b
		}},
		{"unknown type", "unsupported_type", false, func(c *relaytest.Client) []byte {
			b, _ := json.Marshal(c.Envelope("subscribe", map[string]any{"events": []any{c.Event(1)}}))
			return b
		}},
		{"server type ack", "unsupported_type", false, func(c *relaytest.Client) []byte {
			b, _ := json.Marshal(c.Envelope("ack", map[string]any{"receivedCount": 1, "lastTimestamp": 0}))
			return b
		}},
		{"server type pull_response", "unsupported_type", false, func(c *relaytest.Client) []byte {
			b, _ := json.Marshal(c.Envelope("pull_response", map[string]any{"events": []any{}, "hasMore": false}))
			return b
		}},
		{"type in another case", "unsupported_type", false, func(c *relaytest.Client) []byte {
			b, _ := json.Marshal(c.Envelope("PUSH", map[string]any{"events": []any{c.Event(1)}}))
			return b
		}},
		{"empty type", "unsupported_type", false, func(c *relaytest.Client) []byte {
			b, _ := json.Marshal(c.Envelope("", map[string]any{}))
			return b
		}},
	}
	s := relaytest.Start(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, bound := range []bool{false, true} {
				laptop := s.Dial(t, "alice", "laptop")
				phone := s.Dial(t, "alice", "phone")
				phone.Bind()
				if bound {
					laptop.Bind()
				}
				before := time.Now().UnixMilli()
				if tc.binary {
					wireSendBinary(t, laptop, tc.raw(laptop))
				} else {
					laptop.SendRaw(tc.raw(laptop))
				}
				e := laptop.ExpectError(tc.code)
				wireExpectServerEnvelope(t, e, before)
				if e.Message == "" {
					t.Errorf("error %s has no message", e.Raw)
				}
				// Exactly one answer, nothing relayed, and the connection
				// still works (and, when it was not bound, binds now).
				laptop.ExpectQuiet()
				phone.ExpectQuiet()
				sent := laptop.Push(laptop.Event(1))
				wireExpectRelayed(t, phone, "push", sent)
				laptop.Expect("ack")
				laptop.Close()
				phone.Close()
			}
		})
	}
}

func TestPullResponseCarriesNoEventsAndTheOnlinePeers(t *testing.T) {
	s := relaytest.Start(t)
	me := s.Dial(t, "alice", "me")

	before := time.Now().UnixMilli()
	m := me.Bind()
	wireExpectServerEnvelope(t, m, before)
	var payload bytes.Buffer
	if err := json.Compact(&payload, m.Payload); err != nil {
		t.Fatal(err)
	}
	if got, want := payload.String(), `{"events":[],"fromClientId":"server","hasMore":false}`; got != want {
		t.Fatalf("payload = %s, want %s", got, want)
	}
	if got := string(wireTopLevel(t, m)["onlinePeers"]); got != "[]" {
		t.Fatalf("alone: onlinePeers = %s, want []", got)
	}

	// Own clientId excluded even in another session; distinct; sorted.
	me2 := wireDialAs(t, s, "alice", "me", "me-second-session")
	me2.Bind()
	wireExpectOnlinePeers(t, me)
	zeta := s.Dial(t, "alice", "zeta")
	alpha := s.Dial(t, "alice", "alpha")
	mid := wireDialAs(t, s, "alice", "mid", "one")
	mid2 := wireDialAs(t, s, "alice", "mid", "two")
	wireBindAll(zeta, alpha, mid, mid2)
	s.Dial(t, "alice", "unbound") // connected, never bound: not a peer
	wireAwaitConnections(t, s, 7)

	wireExpectOnlinePeers(t, me, "alpha", "mid", "zeta")
	wireExpectOnlinePeers(t, me2, "alpha", "mid", "zeta")
	wireExpectOnlinePeers(t, mid, "alpha", "me", "zeta")
	wireExpectOnlinePeers(t, zeta, "alpha", "me", "mid")

	// A peer that leaves is no longer listed; one session of mid is enough
	// to list it.
	zeta.Close()
	mid.Close()
	relaytest.Eventually(t, relaytest.Timeout, "zeta to leave", func() bool {
		return slices.Equal(wireOnlinePeers(t, me), []string{"alpha", "mid"})
	})
	mid2.Close()
	relaytest.Eventually(t, relaytest.Timeout, "mid to leave", func() bool {
		return slices.Equal(wireOnlinePeers(t, me), []string{"alpha"})
	})
}

func TestPullSinceTimestamp(t *testing.T) {
	cases := []struct {
		name  string
		since any // nil: absent
		valid bool
	}{
		{"absent", nil, true},
		{"zero", 0, true},
		{"positive", 1733640000000, true},
		{"negative", -1, false},
		{"fractional", 1.5, false},
		{"string", "1733640000000", false},
		{"null", json.RawMessage("null"), false},
	}
	s := relaytest.Start(t)
	laptop := s.Dial(t, "alice", "laptop")
	phone := s.Dial(t, "alice", "phone")
	wireBindAll(laptop, phone)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := map[string]any{}
			if tc.since != nil {
				p["sinceTimestamp"] = tc.since
			}
			laptop.Send(laptop.Envelope("pull", p))
			if tc.valid {
				m := laptop.Expect("pull_response")
				if !slices.Equal(m.OnlinePeers, []string{"phone"}) {
					t.Fatalf("onlinePeers = %q, want [phone]", m.OnlinePeers)
				}
			} else {
				laptop.ExpectError("invalid_message")
			}
			laptop.ExpectQuiet()
			phone.ExpectQuiet()
		})
	}
}

func TestPullWithoutPayloadIsInvalid(t *testing.T) {
	s := relaytest.Start(t)
	laptop := s.Dial(t, "alice", "laptop")
	laptop.Bind()
	env := laptop.Envelope("pull", nil)
	delete(env, "payload")
	laptop.Send(env)
	laptop.ExpectError("invalid_message")
	laptop.ExpectQuiet()
}

func TestFrameOverTheMessageLimitClosesTheConnectionWith1009(t *testing.T) {
	const limit = 1024
	s := relaytest.Start(t, relaytest.WithLimits(func(c *transport.Config) { c.MaxMessageBytes = limit }))
	laptop := s.Dial(t, "alice", "laptop")
	phone := s.Dial(t, "alice", "phone")
	wireBindAll(laptop, phone)

	// pushOf returns a push of exactly n bytes.
	pushOf := func(n int) []byte {
		ev := laptop.Event("")
		env := laptop.Envelope("push", map[string]any{"events": []any{ev}})
		b, _ := json.Marshal(env)
		ev["data"] = strings.Repeat("x", n-len(b))
		b, _ = json.Marshal(env)
		if len(b) != n {
			t.Fatalf("built %d bytes, want %d", len(b), n)
		}
		return b
	}

	at := pushOf(limit)
	laptop.SendRaw(at)
	wireExpectRelayed(t, phone, "push", at)
	laptop.Expect("ack")

	laptop.SendRaw(pushOf(limit + 1))
	laptop.ExpectClose(websocket.StatusMessageTooBig)
	phone.ExpectQuiet()
	wireExpectOnlinePeers(t, phone)
}

// TestWireNestingLimit: JSON nested 128 levels deep is relayed; one level
// more is refused with invalid_message, and the error says what the limit is.
func TestWireNestingLimit(t *testing.T) {
	s := relaytest.Start(t)
	phone := s.Dial(t, "nest-user", "phone")
	laptop := s.Dial(t, "nest-user", "laptop")
	wireBindAll(phone, laptop)
	// The message is level 1, payload 2, events 3, an event 4, its data 5.
	nested := func(levels int) json.RawMessage {
		return json.RawMessage(strings.Repeat("[", levels-4) + strings.Repeat("]", levels-4))
	}
	sent := phone.Push(phone.Event(nested(128)))
	phone.Expect("ack")
	wireExpectRelayed(t, laptop, "push", sent)

	phone.Push(phone.Event(nested(129)))
	if m := phone.ExpectError("invalid_message"); !strings.Contains(m.Message, "128 levels") {
		t.Errorf("error message %q does not state the nesting limit", m.Message)
	}
	wireQuietAll(laptop, phone)
}
