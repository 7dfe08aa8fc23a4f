package integration

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/livestore-relay/livestore-relay/test/relaytest"
	"github.com/livestore-relay/livestore-relay/transport"
)

// hsRequest is an upgrade request head of user with extra header lines
// (each ending in CRLF) and without the blank line that ends it.
func hsRequest(t *testing.T, s *relaytest.Server, user, host, extra string) string {
	return "GET " + transport.SyncPath + "?token=" + relaytest.Token(t, user) + " HTTP/1.1\r\n" +
		"Host: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" + extra
}

// hsAnswer sends a complete request head on a new connection and returns
// the relay's answer.
func hsAnswer(t *testing.T, s *relaytest.Server, head string) (*http.Response, string) {
	t.Helper()
	c := s.DialTCP(t)
	_ = c.SetDeadline(time.Now().Add(relaytest.Timeout))
	if _, err := io.WriteString(c, head+"\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return resp, ""
	}
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestRequestWithTwoOriginOrTwoHostHeadersIsRefusedWith400(t *testing.T) {
	s := relaytest.Start(t)
	own := "Origin: http://" + s.Addr + "\r\n"
	evil := "Origin: https://evil.example.com\r\n"
	cases := []struct {
		name, host, extra string
		want              int
	}{
		{"one Origin, the relay's own", s.Addr, own, http.StatusSwitchingProtocols},
		{"allowed Origin, then another", s.Addr, own + evil, http.StatusBadRequest},
		{"another Origin, then an allowed one", s.Addr, evil + own, http.StatusBadRequest},
		{"two Host headers", s.Addr, "Host: evil.example.com\r\n" + own, http.StatusBadRequest},
		{"two equal Host headers", s.Addr, "Host: " + s.Addr + "\r\n", http.StatusBadRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := hsAnswer(t, s, hsRequest(t, s, "alice", tc.host, tc.extra))
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d %s, want %d", resp.StatusCode, body, tc.want)
			}
			if tc.want == http.StatusBadRequest && !strings.Contains(body, `"code":"bad_request"`) {
				t.Fatalf("body %s, want code bad_request", body)
			}
		})
	}
}

func TestRequestHeadOverTheBoundIsRefusedWith431BeforeItEnds(t *testing.T) {
	s := relaytest.Start(t, relaytest.WithLimits(func(c *transport.Config) { c.MaxHeaderBytes = 32 << 10 }))
	t.Run("a head just under the bound upgrades", func(t *testing.T) {
		head := hsRequest(t, s, "alice", s.Addr, "")
		pad := "X-Pad: " + strings.Repeat("p", 32<<10-len(head)-len("X-Pad: \r\n\r\n")) + "\r\n"
		resp, body := hsAnswer(t, s, head+pad)
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("status %d %s, want 101", resp.StatusCode, body)
		}
	})
	t.Run("a header line that never ends", func(t *testing.T) {
		c := s.DialTCP(t)
		// The line is written for as long as the relay reads it; it never
		// ends, so an answer proves the relay stopped reading on its own.
		go func() {
			_ = c.SetWriteDeadline(time.Now().Add(relaytest.Timeout))
			if _, err := io.WriteString(c, hsRequest(t, s, "alice", s.Addr, "X-Big: ")); err != nil {
				return
			}
			chunk := bytes.Repeat([]byte("a"), 4<<10)
			for range (64 << 20) / len(chunk) {
				if _, err := c.Write(chunk); err != nil {
					return
				}
			}
		}()
		_ = c.SetReadDeadline(time.Now().Add(relaytest.Timeout))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("no answer while the header was still being sent: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || !strings.Contains(string(b), `"code":"headers_too_large"`) {
			t.Fatalf("status %d %s, want 431 headers_too_large", resp.StatusCode, b)
		}
	})
}

func TestSilentConnectionsPastMaxHandshakesMakeRoomOldestFirst(t *testing.T) {
	const max = 4
	s := relaytest.Start(t, relaytest.WithLimits(func(c *transport.Config) { c.MaxHandshakes = max }))
	pending := func() float64 { return s.Metric(t, "livestore_relay_handshakes_pending") }
	// A scrape is a connection too, so the count is read below the bound.
	var silent []net.Conn
	for range max - 1 {
		silent = append(silent, s.DialTCP(t))
	}
	relaytest.Eventually(t, relaytest.Timeout, "the silent connections to be accepted", func() bool {
		return pending() == max-1
	})
	// Connections are accepted in the order they were made: this one is
	// in before the real client's.
	silent = append(silent, s.DialTCP(t))
	// A real client still gets through; the oldest silent connection made
	// room for it long before the handshake timeout.
	phone := s.Dial(t, "alice", "phone")
	phone.Bind()
	if b := relaytest.RawReadAll(t, silent[0]); len(b) != 0 {
		t.Fatalf("the shed connection got %q", b)
	}
	// The others are still waiting: nothing else was shed.
	if n := pending(); n != max-1 {
		t.Fatalf("%v handshakes pending, want %d", n, max-1)
	}
	if n := s.Metric(t, "livestore_relay_handshakes_shed_total"); n != 1 {
		t.Fatalf("%v handshakes shed, want 1", n)
	}
}
