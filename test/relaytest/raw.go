package relaytest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// RawConn is a WebSocket connection driven frame by frame, for what a
// well-behaved client library cannot do or hides: staying silent, never
// reading, sending invalid UTF-8, fragments, unmasked frames or a header
// that announces a payload it never sends. Frames it writes are masked
// unless a method says otherwise. Its methods must be called from the
// test's goroutine.
type RawConn struct {
	Device
	Conn net.Conn
	r    *bufio.Reader
	// AnswerPings makes the reading methods answer every ping with a pong,
	// as a browser does; off, pings are read and ignored.
	AnswerPings bool
	// Pings counts the pings read so far.
	Pings int
}

// DialRaw upgrades a new connection of user's device clientID, token in the
// query, and returns it without reading or writing anything more.
func (s *Server) DialRaw(t testing.TB, user, clientID string) *RawConn {
	t.Helper()
	return s.DialRawToken(t, Token(t, user), clientID)
}

// DialRawToken is DialRaw with a token of the caller's, for a server that
// does not accept Secret (a relay binary started with a secret of its own).
func (s *Server) DialRawToken(t testing.TB, token, clientID string) *RawConn {
	t.Helper()
	dialer := ws.Dialer{Timeout: Timeout}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	conn, br, _, err := dialer.Dial(ctx, s.URL+"?token="+url.QueryEscape(token))
	if err != nil {
		t.Fatalf("raw dial as %s: %v", clientID, err)
	}
	if br == nil {
		br = bufio.NewReader(conn)
	}
	t.Cleanup(func() { _ = conn.Close() })
	r := &RawConn{Conn: conn, r: br}
	r.init(t, clientID, fmt.Sprintf("%s-raw-session-%d", clientID, time.Now().UnixNano()), r.SendText, r.Recv)
	return r
}

// DialTCP opens a plain TCP connection to the server, closed when the test ends.
func (s *Server) DialTCP(t testing.TB) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.Addr, Timeout)
	if err != nil {
		t.Fatalf("dial tcp: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// WriteFrame masks a copy of f and writes it.
func (r *RawConn) WriteFrame(f ws.Frame) {
	r.t.Helper()
	r.write(ws.MaskFrame(f))
}

// WriteUnmasked writes f as it is, without a mask, which clients must not do.
func (r *RawConn) WriteUnmasked(f ws.Frame) {
	r.t.Helper()
	f.Header.Masked = false
	r.write(f)
}

// WriteHeader writes only a masked frame header: the payload it announces
// is not sent.
func (r *RawConn) WriteHeader(h ws.Header) {
	r.t.Helper()
	h.Masked, h.Mask = true, ws.NewMask()
	_ = r.Conn.SetWriteDeadline(time.Now().Add(Timeout))
	if err := ws.WriteHeader(r.Conn, h); err != nil {
		r.t.Fatalf("raw write header: %v", err)
	}
}

func (r *RawConn) write(f ws.Frame) {
	r.t.Helper()
	_ = r.Conn.SetWriteDeadline(time.Now().Add(Timeout))
	if err := ws.WriteFrame(r.Conn, f); err != nil {
		r.t.Fatalf("raw write: %v", err)
	}
}

// SendText sends b as one masked text frame.
func (r *RawConn) SendText(b []byte) {
	r.t.Helper()
	r.WriteFrame(ws.NewTextFrame(b))
}

// rawMaxFrame bounds what the test client reads in one frame.
const rawMaxFrame = 64 << 20

// ReadFrame reads the next frame from the server within d. Pings are
// counted and, with AnswerPings, answered.
func (r *RawConn) ReadFrame(d time.Duration) (ws.Frame, error) {
	_ = r.Conn.SetReadDeadline(time.Now().Add(d))
	var f ws.Frame
	h, err := ws.ReadHeader(r.r)
	if err != nil {
		return f, err
	}
	if h.Length > rawMaxFrame {
		return f, fmt.Errorf("server frame of %d bytes", h.Length)
	}
	f.Header, f.Payload = h, make([]byte, h.Length)
	if _, err := io.ReadFull(r.r, f.Payload); err != nil {
		return f, err
	}
	if f.Header.Masked {
		return f, errors.New("server sent a masked frame")
	}
	if f.Header.OpCode == ws.OpPing {
		r.Pings++
		if r.AnswerPings {
			r.WriteFrame(ws.NewPongFrame(f.Payload))
		}
	}
	return f, nil
}

// next returns the next frame that is not a ping or pong.
func (r *RawConn) next(deadline time.Time) (ws.Frame, error) {
	for {
		f, err := r.ReadFrame(time.Until(deadline))
		if err != nil || (f.Header.OpCode != ws.OpPing && f.Header.OpCode != ws.OpPong) {
			return f, err
		}
	}
}

// Recv returns the next text message, failing on anything else.
func (r *RawConn) Recv() Msg {
	r.t.Helper()
	f, err := r.next(time.Now().Add(Timeout))
	if err != nil {
		r.t.Fatalf("%s: raw receive: %v", r.ClientID, err)
	}
	return r.message(f)
}

func (r *RawConn) message(f ws.Frame) Msg {
	r.t.Helper()
	switch f.Header.OpCode {
	case ws.OpText:
	case ws.OpClose:
		code, reason := ws.ParseCloseFrameData(f.Payload)
		r.t.Fatalf("%s: connection closed with %d %q, want a message", r.ClientID, code, reason)
	default:
		r.t.Fatalf("%s: got a frame with opcode %d, want a text message", r.ClientID, f.Header.OpCode)
	}
	if !f.Header.Fin {
		r.t.Fatalf("%s: server fragmented a message", r.ClientID)
	}
	m := Msg{}
	if err := json.Unmarshal(f.Payload, &m); err != nil {
		r.t.Fatalf("%s: server sent invalid JSON %q: %v", r.ClientID, f.Payload, err)
	}
	m.Raw = f.Payload
	return m
}

// ExpectPing reads frames until a ping arrives, failing on a message or a close.
func (r *RawConn) ExpectPing() {
	r.t.Helper()
	f, err := r.ReadFrame(Timeout)
	for err == nil && f.Header.OpCode == ws.OpPong {
		f, err = r.ReadFrame(Timeout)
	}
	switch {
	case err != nil:
		r.t.Fatalf("%s: waiting for a ping: %v", r.ClientID, err)
	case f.Header.OpCode == ws.OpClose:
		code, reason := ws.ParseCloseFrameData(f.Payload)
		r.t.Fatalf("%s: closed with %d %q, want a ping", r.ClientID, code, reason)
	case f.Header.OpCode != ws.OpPing:
		r.t.Fatalf("%s: got opcode %d, want a ping", r.ClientID, f.Header.OpCode)
	case !f.Header.Fin || f.Header.Length > 125:
		r.t.Fatalf("%s: malformed ping %+v", r.ClientID, f.Header)
	}
}

// RawClosed is how a connection ended, as a raw client saw it.
type RawClosed struct {
	// Messages are the text messages read before the end.
	Messages []Msg
	// Code is the close frame's code; 0 when the stream ended without one.
	Code ws.StatusCode
	// Reason is the close frame's reason text.
	Reason string
	// Err is what ended the stream after the close frame (normally io.EOF),
	// or what ended it without one.
	Err error
}

// ReadUntilClose reads every message until the server's close frame and the
// end of the stream that must follow it, answering the close frame with
// the same code as a client should, then closes the socket. It fails when
// the server sends nothing for Timeout, or keeps sending for ten times as
// long.
func (r *RawConn) ReadUntilClose() RawClosed {
	r.t.Helper()
	var out RawClosed
	defer r.Conn.Close()
	limit := time.Now().Add(10 * Timeout)
	deadline := func() time.Time {
		if d := time.Now().Add(Timeout); d.Before(limit) {
			return d
		}
		return limit
	}
	for {
		f, err := r.next(deadline())
		if err != nil {
			if rawIsTimeout(err) {
				r.t.Fatalf("%s: connection still open, nothing read for %v (%d messages read)", r.ClientID, Timeout, len(out.Messages))
			}
			out.Err = err
			return out
		}
		if f.Header.OpCode != ws.OpClose {
			out.Messages = append(out.Messages, r.message(f))
			continue
		}
		out.Code, out.Reason = ws.ParseCloseFrameData(f.Payload)
		if out.Code == 0 {
			out.Code = ws.StatusNoStatusRcvd
		}
		_ = r.Conn.SetWriteDeadline(time.Now().Add(Timeout))
		_ = ws.WriteFrame(r.Conn, ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(out.Code, ""))))
		after, err := r.ReadFrame(time.Until(deadline()))
		if err == nil {
			r.t.Fatalf("%s: server sent opcode %d after its close frame", r.ClientID, after.Header.OpCode)
		}
		if rawIsTimeout(err) {
			r.t.Fatalf("%s: server kept the stream open after its close frame", r.ClientID)
		}
		out.Err = err
		return out
	}
}

// ExpectClose reads until the connection ends and fails unless the server
// sent a close frame with code and nothing else before it.
func (r *RawConn) ExpectClose(code ws.StatusCode) RawClosed {
	r.t.Helper()
	c := r.ReadUntilClose()
	switch {
	case len(c.Messages) > 0:
		r.t.Fatalf("%s: got %s before the close, want only a close %d", r.ClientID, c.Messages[0].Raw, code)
	case c.Code == 0:
		r.t.Fatalf("%s: connection ended (%v) without a close frame, want close %d", r.ClientID, c.Err, code)
	case c.Code != code:
		r.t.Fatalf("%s: closed with %d %q, want %d", r.ClientID, c.Code, c.Reason, code)
	}
	return c
}

// rawIsTimeout reports whether err is the client's own read deadline passing.
func rawIsTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// RawReadAll reads c until the server ends the stream and returns the bytes
// it sent. It fails when the stream is still open after Timeout.
func RawReadAll(t testing.TB, c net.Conn) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(Timeout))
	b, err := io.ReadAll(c)
	if err != nil && rawIsTimeout(err) {
		t.Fatalf("connection still open after %v (read %q)", Timeout, b)
	}
	return b
}
