package integration

import (
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/livestore-relay/livestore-relay/test/relaytest"
)

func TestConnectionIsNoPeerBeforeItsFirstValidMessage(t *testing.T) {
	s := relaytest.Start(t)
	laptop := s.Dial(t, "alice", "laptop")
	laptop.Bind()
	phone := s.Dial(t, "alice", "phone") // connected, silent
	wireAwaitConnections(t, s, 2)

	wireExpectOnlinePeers(t, laptop)
	laptop.Push(laptop.Event(1))
	laptop.Expect("ack")
	// With no bound peer, a peer_pull is answered by the server, not
	// forwarded to the silent connection.
	wireSendPeerPull(laptop, "r1", nil)
	m := laptop.Expect("peer_pull_response")
	if m.ClientID != "server" {
		t.Fatalf("peer_pull_response %s, want one from the server", m.Raw)
	}

	// The first answer phone gets is the one to its own pull: the push and
	// the peer_pull above never reached it.
	phone.Bind()
	wireExpectOnlinePeers(t, laptop, "phone")
	sent := laptop.Push(laptop.Event(2))
	wireExpectRelayed(t, phone, "push", sent)
}

func TestInvalidFirstMessageDoesNotBind(t *testing.T) {
	s := relaytest.Start(t)
	laptop := s.Dial(t, "alice", "laptop")
	laptop.Bind()
	phone := s.Dial(t, "alice", "phone")

	// Rejected messages that name other identities bind nothing.
	phone.Send(wireEnvelope(phone, "push", map[string]any{"events": "nope"}, func(env map[string]any) {
		env["clientId"] = "ghost"
	}))
	phone.ExpectError("invalid_message")
	phone.Send(wireEnvelope(phone, "subscribe", map[string]any{}, func(env map[string]any) {
		env["clientId"] = "ghost"
	}))
	phone.ExpectError("unsupported_type")
	wireSendBinary(t, phone, []byte(`{}`))
	phone.ExpectError("invalid_message")
	wireExpectOnlinePeers(t, laptop)

	// The first valid message binds whatever identity it carries.
	phone.Bind()
	wireExpectOnlinePeers(t, laptop, "phone")
}

func TestAnyValidMessageTypeBindsTheConnection(t *testing.T) {
	cases := []struct {
		name  string
		send  func(c *relaytest.Client)
		reply string // a message type, or an error code
	}{
		{"pull", func(c *relaytest.Client) { c.Send(c.Envelope("pull", map[string]any{})) }, "pull_response"},
		{"push", func(c *relaytest.Client) { c.Push(c.Event(1)) }, "ack"},
		{"peer_pull", func(c *relaytest.Client) { wireSendPeerPull(c, "r1", map[string]any{"targetClientId": "nobody"}) }, "peer_pull_response"},
		// A well-formed response to a request nobody made is still a valid
		// message: it is refused with unknown_request but identifies the
		// device.
		{"peer_pull_response", func(c *relaytest.Client) { wireSendPeerPullResponse(c, "nope", false) }, "unknown_request"},
	}
	s := relaytest.Start(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			laptop := s.Dial(t, "alice", "laptop")
			laptop.Bind()
			phone := s.Dial(t, "alice", "phone")
			tc.send(phone)
			if m := phone.Recv(); m.Type != tc.reply && m.Code != tc.reply {
				t.Fatalf("phone: got %s, want %s", m.Raw, tc.reply)
			}
			if tc.name == "push" {
				laptop.Expect("push") // relayed: phone was a peer at once
			}
			wireExpectOnlinePeers(t, laptop, "phone")
			sent := laptop.Push(laptop.Event(1))
			wireExpectRelayed(t, phone, "push", sent)
			laptop.Expect("ack")

			// Bound now: another identity is a mismatch.
			wireSendAs(phone, phone.ClientID, phone.SessionID+"-other", "pull", map[string]any{})
			phone.ExpectError("client_mismatch")
			laptop.Close()
			phone.Close()
		})
	}
}

func TestMessageWithAnotherIdentityIsRejectedAndDropped(t *testing.T) {
	cases := []struct {
		name                string
		clientID, sessionID string // "" keeps the bound one
	}{
		{"other clientId", "tablet", ""},
		{"other sessionId", "", "another-session"},
		{"both other", "tablet", "another-session"},
		{"clientId of a peer", "phone", ""},
	}
	s := relaytest.Start(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			laptop := s.Dial(t, "alice", "laptop")
			phone := s.Dial(t, "alice", "phone")
			wireBindAll(laptop, phone)
			clientID, sessionID := laptop.ClientID, laptop.SessionID
			if tc.clientID != "" {
				clientID = tc.clientID
			}
			if tc.sessionID != "" {
				sessionID = tc.sessionID
			}

			wireSendAs(laptop, clientID, sessionID, "push", map[string]any{"events": []any{laptop.Event(1)}})
			laptop.ExpectError("client_mismatch")
			wireSendAs(laptop, clientID, sessionID, "peer_pull", map[string]any{"requestId": "r1", "sinceTimestamp": 0})
			laptop.ExpectError("client_mismatch")
			wireSendAs(laptop, clientID, sessionID, "pull", map[string]any{})
			laptop.ExpectError("client_mismatch")
			laptop.ExpectQuiet() // no ack, no pull_response
			phone.ExpectQuiet()  // neither the push nor the peer_pull
			wireExpectOnlinePeers(t, phone, "laptop")

			// The connection keeps its identity and keeps working.
			sent := laptop.Push(laptop.Event(2))
			wireExpectRelayed(t, phone, "push", sent)
			laptop.Expect("ack")
			sent = wireSendPeerPull(laptop, "r2", nil)
			wireExpectRelayed(t, phone, "peer_pull", sent)
			laptop.Close()
			phone.Close()
		})
	}
}

func TestClientIDServerIsReserved(t *testing.T) {
	s := relaytest.Start(t)
	laptop := s.Dial(t, "alice", "laptop")
	laptop.Bind()

	t.Run("as first message", func(t *testing.T) {
		c := s.Dial(t, "alice", "server")
		c.Push(c.Event(1))
		c.ExpectError("invalid_message")
		c.Send(c.Envelope("pull", map[string]any{}))
		c.ExpectError("invalid_message")
		laptop.ExpectQuiet()
		wireExpectOnlinePeers(t, laptop)
		// Not bound by it: the connection can still bind as a device.
		c.ClientID = "phone"
		c.Bind()
		wireExpectOnlinePeers(t, laptop, "phone")
		c.Close()
	})
	t.Run("after binding", func(t *testing.T) {
		c := s.Dial(t, "alice", "tablet")
		c.Bind()
		wireSendAs(c, "server", c.SessionID, "push", map[string]any{"events": []any{c.Event(1)}})
		c.ExpectError("invalid_message")
		laptop.ExpectQuiet()
		c.ExpectQuiet()
	})
}

func TestSameClientAndSessionReplacesTheOlderConnection(t *testing.T) {
	s := relaytest.Start(t)
	phone := s.Dial(t, "alice", "phone")
	phone.Bind()
	old := wireDialAs(t, s, "alice", "laptop", "laptop-session")
	old.Bind()

	// Connecting is not enough: the replacement happens when the newer
	// connection binds.
	fresh := wireDialAs(t, s, "alice", "laptop", "laptop-session")
	wireAwaitConnections(t, s, 3)
	sent := phone.Push(phone.Event(1))
	wireExpectRelayed(t, old, "push", sent)
	phone.Expect("ack")

	fresh.Bind() // its first message is its own pull's answer
	old.ExpectClose(websocket.StatusCode(4002))

	sent = phone.Push(phone.Event(2))
	wireExpectRelayed(t, fresh, "push", sent)
	phone.Expect("ack")
	wireExpectOnlinePeers(t, fresh, "phone")
	wireExpectOnlinePeers(t, phone, "laptop")
	sent = wireSendPeerPull(phone, "r1", nil)
	wireExpectRelayed(t, fresh, "peer_pull", sent)
	fresh.ExpectQuiet()
}

func TestOtherSessionsOfTheSameClientStayConnectedAndReceivePushes(t *testing.T) {
	s := relaytest.Start(t)
	tab1 := wireDialAs(t, s, "alice", "laptop", "tab-1")
	tab2 := wireDialAs(t, s, "alice", "laptop", "tab-2")
	tab3 := wireDialAs(t, s, "alice", "laptop", "tab-3")
	phone := s.Dial(t, "alice", "phone")
	wireBindAll(tab1, tab2, tab3, phone)

	sent := tab1.Push(tab1.Event(1))
	wireExpectRelayed(t, tab2, "push", sent)
	wireExpectRelayed(t, tab3, "push", sent)
	wireExpectRelayed(t, phone, "push", sent)
	tab1.Expect("ack")
	wireQuietAll(tab1, tab2, tab3, phone) // and none of them was closed
}

func TestServerMessagesCarryTheServerEnvelope(t *testing.T) {
	s := relaytest.Start(t)
	laptop := s.Dial(t, "alice", "laptop")
	before := time.Now().UnixMilli()
	wireExpectServerEnvelope(t, laptop.Bind(), before)

	before = time.Now().UnixMilli()
	laptop.Push(laptop.Event(1))
	wireExpectServerEnvelope(t, laptop.Expect("ack"), before)

	before = time.Now().UnixMilli()
	wireSendPeerPull(laptop, "r1", nil)
	wireExpectServerEnvelope(t, laptop.Expect("peer_pull_response"), before)

	for _, code := range []string{"invalid_message", "unsupported_type", "client_mismatch", "unknown_request"} {
		before = time.Now().UnixMilli()
		switch code {
		case "invalid_message":
			laptop.SendRaw([]byte("{"))
		case "unsupported_type":
			laptop.Send(laptop.Envelope("hello", map[string]any{}))
		case "client_mismatch":
			wireSendAs(laptop, laptop.ClientID, laptop.SessionID+"-x", "pull", map[string]any{})
		case "unknown_request":
			wireSendPeerPullResponse(laptop, "never-asked", false)
		}
		e := laptop.ExpectError(code)
		wireExpectServerEnvelope(t, e, before)
		if e.Message == "" {
			t.Errorf("error %s has no message", e.Raw)
		}
	}
}

func TestIdentityIsComparedAfterUnescaping(t *testing.T) {
	s := relaytest.Start(t)
	laptop := wireDialAs(t, s, "alice", "laptop", "s1")
	phone := s.Dial(t, "alice", "phone")
	wireBindAll(laptop, phone)

	// "lap\u0074op" and "s\u0031" are the same strings as the bound ones.
	ev := `{"eventName":"e","eventNumber":1,"clientId":"laptop","sessionId":"s1","timestamp":1,"data":null}`
	sent := []byte(`{"type":"push","clientId":"lap\u0074op","sessionId":"s\u0031","timestamp":1,"payload":{"events":[` + ev + `]}}`)
	laptop.SendRaw(sent)
	wireExpectRelayed(t, phone, "push", sent)
	laptop.Expect("ack")

	// The reserved clientId is reserved however it is written.
	tablet := s.Dial(t, "alice", "tablet")
	tablet.SendRaw([]byte(`{"type":"pull","clientId":"\u0073erver","sessionId":"x","timestamp":1,"payload":{}}`))
	tablet.ExpectError("invalid_message")
	wireExpectOnlinePeers(t, phone, "laptop")
}
