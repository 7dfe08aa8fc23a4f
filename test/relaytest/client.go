package relaytest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// Timeout bounds every wait of a client; a test that waits longer has found a bug.
const Timeout = 5 * time.Second

// Client is one WebSocket connection to the relay, as a device uses it,
// through a client library (coder/websocket) that answers pings and
// checks frames as a browser does.
type Client struct {
	Device
	Conn *websocket.Conn
}

// Dial connects user's device clientID with a fresh session, token in the query.
func (s *Server) Dial(t testing.TB, user, clientID string) *Client {
	t.Helper()
	return s.DialDevice(t, s.URL+"?token="+Token(t, user), nil, clientID)
}

// DialDevice connects device clientID, with a fresh session, to url with
// extra request headers, and fails the test if the upgrade is refused.
func (s *Server) DialDevice(t testing.TB, url string, h http.Header, clientID string) *Client {
	t.Helper()
	c, resp, err := s.DialWith(t, url, h)
	if err != nil {
		t.Fatalf("dial as %s: upgrade refused: %v (status %d, body %s)", clientID, err, StatusOf(resp), BodyOf(resp))
	}
	c.ClientID = clientID
	c.SessionID = fmt.Sprintf("%s-session-%d", clientID, time.Now().UnixNano())
	return c
}

// StatusOf is the status code of a response, 0 when there is none (the
// upgrade failed before an answer).
func StatusOf(r *http.Response) int {
	if r == nil {
		return 0
	}
	return r.StatusCode
}

// BodyOf reads the body of a response, "" when there is none.
func BodyOf(r *http.Response) string {
	if r == nil || r.Body == nil {
		return ""
	}
	b, _ := io.ReadAll(r.Body)
	return string(b)
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
	c := &Client{Conn: conn}
	c.init(t, "", "", c.SendRaw, c.Recv)
	t.Cleanup(func() { _ = conn.CloseNow() })
	return c, resp, nil
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
