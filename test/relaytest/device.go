package relaytest

import (
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"
)

// Device is what both test clients share: the identity a device speaks
// with, the messages it builds from that identity, and the exchanges made
// of sending one message and reading the next. Client and RawConn embed it
// and supply how a text message goes out and how the next one is read.
type Device struct {
	t         testing.TB
	ClientID  string
	SessionID string
	seq       atomic.Int64
	sendText  func([]byte)
	recv      func() Msg
}

// init binds the device to its test and to its connection's way of sending
// a text message and reading the next one.
func (d *Device) init(t testing.TB, clientID, sessionID string, sendText func([]byte), recv func() Msg) {
	d.t, d.ClientID, d.SessionID = t, clientID, sessionID
	d.sendText, d.recv = sendText, recv
}

// Envelope builds a client message of this device.
func (d *Device) Envelope(typ string, payload any) map[string]any {
	return map[string]any{
		"type": typ, "clientId": d.ClientID, "sessionId": d.SessionID,
		"timestamp": time.Now().UnixMilli(), "payload": payload,
	}
}

// Event makes one valid event of this device; event numbers count up from 1.
func (d *Device) Event(data any) map[string]any {
	n := d.seq.Add(1)
	return map[string]any{
		"eventName": "todo.created", "eventNumber": n, "clientId": d.ClientID,
		"sessionId": d.SessionID, "timestamp": time.Now().UnixMilli(), "data": data,
	}
}

// Send encodes v as JSON, sends it as one text message and returns the bytes.
func (d *Device) Send(v any) []byte {
	d.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		d.t.Fatal(err)
	}
	d.sendText(b)
	return b
}

// Push sends a push of the given events and returns the bytes sent.
func (d *Device) Push(events ...map[string]any) []byte {
	d.t.Helper()
	if events == nil {
		events = []map[string]any{}
	}
	return d.Send(d.Envelope("push", map[string]any{"events": events}))
}

// Bind sends a pull, which binds the connection, and returns the answer.
func (d *Device) Bind() Msg {
	d.t.Helper()
	d.Send(d.Envelope("pull", map[string]any{}))
	return d.Expect("pull_response")
}

// ExpectQuiet proves nothing is waiting for this device: a pull sent now
// must be answered by the very next message.
func (d *Device) ExpectQuiet() {
	d.t.Helper()
	d.Bind()
}

// Expect receives the next message and fails unless it has type typ.
func (d *Device) Expect(typ string) Msg {
	d.t.Helper()
	m := d.recv()
	if m.Type != typ {
		d.t.Fatalf("%s: got %s, want a %s", d.ClientID, m.Raw, typ)
	}
	return m
}

// ExpectError receives the next message and fails unless it is an error with code.
func (d *Device) ExpectError(code string) Msg {
	d.t.Helper()
	m := d.Expect("error")
	if m.Code != code {
		d.t.Fatalf("%s: got error %s, want code %s", d.ClientID, m.Raw, code)
	}
	return m
}

// Msg is one message received from the relay.
type Msg struct {
	Raw         []byte
	Type        string          `json:"type"`
	ClientID    string          `json:"clientId"`
	SessionID   string          `json:"sessionId"`
	Timestamp   int64           `json:"timestamp"`
	Code        string          `json:"code"`
	Message     string          `json:"message"`
	Payload     json.RawMessage `json:"payload"`
	OnlinePeers []string        `json:"onlinePeers"`
}

// Field decodes payload.<name> into v.
func (m Msg) Field(t testing.TB, name string, v any) {
	t.Helper()
	var p map[string]json.RawMessage
	if err := json.Unmarshal(m.Payload, &p); err != nil {
		t.Fatalf("payload of %s: %v", m.Raw, err)
	}
	raw, ok := p[name]
	if !ok {
		t.Fatalf("payload.%s missing in %s", name, m.Raw)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("payload.%s of %s: %v", name, m.Raw, err)
	}
}
