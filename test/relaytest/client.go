package relaytest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// Timeout bounds every wait of a client; a test that waits longer has found a bug.
const Timeout = 5 * time.Second

// Client is one WebSocket connection to the relay, as a device uses it.
type Client struct {
	t         testing.TB
	Conn      *websocket.Conn
	ClientID  string
	SessionID string
	seq       atomic.Int64
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

// Dial connects user's device clientID with a fresh session, token in the query.
func (s *Server) Dial(t testing.TB, user, clientID string) *Client {
	t.Helper()
	c, resp, err := s.DialWith(t, s.URL+"?token="+Token(t, user), nil)
	if err != nil {
		t.Fatalf("dial as %s: %v (status %d)", user, err, status(resp))
	}
	c.ClientID = clientID
	c.SessionID = fmt.Sprintf("%s-session-%d", clientID, time.Now().UnixNano())
	return c
}

func status(r *http.Response) int {
	if r == nil {
		return 0
	}
	return r.StatusCode
}

// DialWith connects to url with extra request headers. On a refused
// upgrade it returns the response and an error.
func (s *Server) DialWith(t testing.TB, url string, h http.Header) (*Client, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		return nil, resp, err
	}
	conn.SetReadLimit(64 << 20)
	c := &Client{t: t, Conn: conn}
	t.Cleanup(func() { _ = conn.CloseNow() })
	return c, resp, nil
}

// Bind sends a pull, which binds the connection, and returns the answer.
func (c *Client) Bind() Msg {
	c.t.Helper()
	c.Send(c.Envelope("pull", map[string]any{}))
	return c.Expect("pull_response")
}

// Envelope builds a client message of this device.
func (c *Client) Envelope(typ string, payload any) map[string]any {
	return map[string]any{
		"type": typ, "clientId": c.ClientID, "sessionId": c.SessionID,
		"timestamp": time.Now().UnixMilli(), "payload": payload,
	}
}

// Event makes one valid event of this device.
func (c *Client) Event(data any) map[string]any {
	n := c.seq.Add(1)
	return map[string]any{
		"eventName": "todo.created", "eventNumber": n, "clientId": c.ClientID,
		"sessionId": c.SessionID, "timestamp": time.Now().UnixMilli(), "data": data,
	}
}

// Push sends a push of the given events and returns the bytes sent.
func (c *Client) Push(events ...map[string]any) []byte {
	c.t.Helper()
	if events == nil {
		events = []map[string]any{}
	}
	return c.Send(c.Envelope("push", map[string]any{"events": events}))
}

// Send encodes v as JSON, sends it as a text message and returns the bytes.
func (c *Client) Send(v any) []byte {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	c.SendRaw(b)
	return b
}

// SendRaw sends b as one text message.
func (c *Client) SendRaw(b []byte) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	if err := c.Conn.Write(ctx, websocket.MessageText, b); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// Recv returns the next message, failing the test after Timeout.
func (c *Client) Recv() Msg {
	c.t.Helper()
	m, err := c.TryRecv(Timeout)
	if err != nil {
		c.t.Fatalf("%s/%s: receive: %v", c.ClientID, c.SessionID, err)
	}
	return m
}

// TryRecv returns the next message or the error that ended the wait.
func (c *Client) TryRecv(d time.Duration) (Msg, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	typ, b, err := c.Conn.Read(ctx)
	if err != nil {
		return Msg{}, err
	}
	if typ != websocket.MessageText {
		return Msg{}, errors.New("binary message from server")
	}
	m := Msg{Raw: b}
	if err := json.Unmarshal(b, &m); err != nil {
		return Msg{}, fmt.Errorf("server sent invalid JSON %q: %w", b, err)
	}
	m.Raw = b
	return m, nil
}

// Expect receives the next message and fails unless it has type typ.
func (c *Client) Expect(typ string) Msg {
	c.t.Helper()
	m := c.Recv()
	if m.Type != typ {
		c.t.Fatalf("%s: got %s, want a %s", c.ClientID, m.Raw, typ)
	}
	return m
}

// ExpectError receives the next message and fails unless it is an error with code.
func (c *Client) ExpectError(code string) Msg {
	c.t.Helper()
	m := c.Expect("error")
	if m.Code != code {
		c.t.Fatalf("%s: got error %s, want code %s", c.ClientID, m.Raw, code)
	}
	return m
}

// ExpectQuiet proves nothing is waiting for this client: a pull sent now
// must be answered by the very next message.
func (c *Client) ExpectQuiet() {
	c.t.Helper()
	c.Send(c.Envelope("pull", map[string]any{}))
	c.Expect("pull_response")
}

// ExpectClose reads until the connection ends and fails unless the server
// closed it with code.
func (c *Client) ExpectClose(code websocket.StatusCode) {
	c.t.Helper()
	deadline := time.Now().Add(Timeout)
	for time.Now().Before(deadline) {
		_, err := c.TryRecv(time.Until(deadline))
		if err == nil {
			continue
		}
		if got := websocket.CloseStatus(err); got != code {
			c.t.Fatalf("%s: connection ended with %v (status %d), want close %d", c.ClientID, err, got, code)
		}
		return
	}
	c.t.Fatalf("%s: no close %d within %v", c.ClientID, code, Timeout)
}

// Close closes the connection normally.
func (c *Client) Close() { _ = c.Conn.Close(websocket.StatusNormalClosure, "") }
