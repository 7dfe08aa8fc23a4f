package integration

import (
	"bytes"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/gobwas/ws"
	"github.com/golang-jwt/jwt/v5"

	"github.com/livestore-relay/livestore-relay/auth"
	"github.com/livestore-relay/livestore-relay/test/relaytest"
	"github.com/livestore-relay/livestore-relay/transport"
)

// livePingInterval is the ping interval the liveness tests configure:
// short, but long enough that a client answering pings is never starved
// into two silent intervals on a loaded machine.
const livePingInterval = 500 * time.Millisecond

func liveFastPings() relaytest.Option {
	return relaytest.WithLimits(func(c *transport.Config) { c.Actors.PingInterval = livePingInterval })
}

// liveServeResult waits for the result of Serve after a StopAsync.
func liveServeResult(t *testing.T, done <-chan error, why string) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve returned %v, want nil", err)
		}
	case <-time.After(relaytest.Timeout):
		t.Fatalf("Serve did not return within %v %s", relaytest.Timeout, why)
	}
}

func TestServerPingsAnIdleConnection(t *testing.T) {
	t.Parallel() // waits on timers; runs alongside the other waiting tests
	s := relaytest.Start(t, liveFastPings())
	r := s.DialRaw(t, "alice", "laptop")
	r.Bind()
	r.ExpectPing()
}

func TestSilentConnectionIsClosedAfterTwoPingIntervals(t *testing.T) {
	t.Parallel() // waits on timers; runs alongside the other waiting tests
	cases := []struct {
		name string
		bind bool
	}{
		{"never sends a frame", false},
		{"binds, then falls silent", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := relaytest.Start(t, liveFastPings())
			r := s.DialRaw(t, "alice", "laptop")
			if tc.bind {
				r.Bind()
			}
			// One silent interval: the server pings, and the connection
			// is still open (the ping is the first frame, not a close).
			r.ExpectPing()
			// Two silent intervals: a close frame with 1008 and nothing
			// but pings before it. The client never answers a ping.
			r.ExpectClose(ws.StatusPolicyViolation)
		})
	}
}

func TestClientsAnsweringPingsStayConnectedAcrossManyIntervals(t *testing.T) {
	t.Parallel() // waits on timers; runs alongside the other waiting tests
	s := relaytest.Start(t, liveFastPings())
	// A raw client that answers every ping, and a library client that
	// answers them while it waits for a message.
	laptop := s.DialRaw(t, "alice", "laptop")
	laptop.AnswerPings = true
	laptop.Bind()
	phone := s.Dial(t, "alice", "phone")
	phone.Bind()
	// A silent client alongside, which the same settings must close.
	silent := s.DialRaw(t, "alice", "silent")
	silent.Bind()
	phoneGot := delivReadN(phone, 1)

	// Six pings take at least five intervals, well past the two after
	// which a silent connection is closed.
	for range 6 {
		laptop.ExpectPing()
	}
	silent.ExpectClose(ws.StatusPolicyViolation)

	sent := laptop.Push(laptop.Event("still here"))
	got := delivWait(t, phoneGot)
	if !bytes.Equal(got[0].Raw, sent) {
		t.Fatalf("phone got %s, want the push %s", got[0].Raw, sent)
	}
	laptop.Expect("ack")
	phone.ExpectQuiet()
}

func TestIncompleteHandshakeIsDroppedAfterTheHandshakeTimeout(t *testing.T) {
	t.Parallel() // waits on timers; runs alongside the other waiting tests
	cases := []struct {
		name string
		sent string
	}{
		{"nothing sent", ""},
		{"half a request line", "GET /api/v1/livestore/sy"},
		{"request line and some headers", "GET /api/v1/livestore/sync?token=TOKEN HTTP/1.1\r\nHost: relay\r\nUpgrade: websocket\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := relaytest.Start(t, relaytest.WithLimits(func(c *transport.Config) {
				c.HandshakeTimeout = 300 * time.Millisecond
			}))
			c := s.DialTCP(t)
			if tc.sent != "" {
				req := bytes.ReplaceAll([]byte(tc.sent), []byte("TOKEN"), []byte(relaytest.Token(t, "alice")))
				if _, err := c.Write(req); err != nil {
					t.Fatal(err)
				}
			}
			// Fails if the server still holds the connection after relaytest.Timeout.
			if got := relaytest.RawReadAll(t, c); bytes.HasPrefix(got, []byte("HTTP/1.1 101")) {
				t.Fatalf("incomplete handshake was upgraded: %q", got)
			}
			// The server itself is unaffected.
			s.Dial(t, "alice", "laptop").Bind()
		})
	}
}

func TestConnectionIsClosedWith4001WhenItsTokenExpires(t *testing.T) {
	t.Parallel() // waits on timers; runs alongside the other waiting tests
	cases := []struct {
		name   string
		leeway time.Duration
		exp    func(now time.Time) time.Time
	}{
		// exp has whole seconds: 1 to 2 s from now.
		{"expires while connected", 0, func(now time.Time) time.Time { return now.Add(2 * time.Second).Truncate(time.Second) }},
		// Accepted thanks to the leeway, then closed (at exp or when the
		// leeway runs out: either way within the test's wait).
		{"already past exp when connecting, within the leeway", 2 * time.Second, func(now time.Time) time.Time { return now.Truncate(time.Second) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			now := time.Now()
			exp := tc.exp(now)
			s := relaytest.Start(t, relaytest.WithAuth(func(a *auth.Config) { a.Leeway = tc.leeway }))
			tok := relaytest.SignedToken(t, jwt.SigningMethodHS256, relaytest.Secret, jwt.MapClaims{
				"sub": "alice", "exp": exp.Unix(), "iat": now.Unix(),
			})
			phone := s.Dial(t, "alice", "phone")
			phone.Bind()
			laptop, resp, err := s.DialWith(t, s.URL+"?token="+tok, nil)
			if err != nil {
				t.Fatalf("dial with a token valid until %v: %v (%v)", exp, err, resp)
			}
			laptop.ClientID, laptop.SessionID = "laptop", "laptop-session"
			if time.Until(exp) > 500*time.Millisecond {
				laptop.Bind()
			}

			laptop.ExpectClose(4001)
			if closed := time.Now(); closed.Before(exp) {
				t.Fatalf("closed at %v, before the token's exp %v", closed, exp)
			}
			if m := phone.Bind(); len(m.OnlinePeers) != 0 {
				t.Fatalf("expired connection still listed as a peer: %s", m.Raw)
			}
		})
	}
}

func TestDrainClosesEveryConnectionWith1001AndServeReturnsOnceTheyHaveClosed(t *testing.T) {
	// A drain timeout far longer than the test waits: Serve returning
	// shows that it waited for the clients, not for the timeout.
	s := relaytest.Start(t, relaytest.WithLimits(func(c *transport.Config) { c.DrainTimeout = time.Minute }))
	laptop, phone := s.Dial(t, "alice", "laptop"), s.Dial(t, "alice", "phone")
	unbound := s.Dial(t, "alice", "unbound")
	other := s.Dial(t, "bob", "laptop")
	for _, c := range []*relaytest.Client{laptop, phone, other} {
		c.Bind()
	}
	done := s.StopAsync()
	for _, c := range []*relaytest.Client{laptop, phone, unbound, other} {
		c.ExpectClose(websocket.StatusGoingAway)
	}
	liveServeResult(t, done, "after every client closed")
}

func TestDrainingServerRefusesNewConnectionsWhileAClientStaysOpen(t *testing.T) {
	s := relaytest.Start(t, relaytest.WithLimits(func(c *transport.Config) {
		c.DrainTimeout = time.Minute
		c.CloseGrace = time.Minute
	}))
	stuck := s.DialRaw(t, "alice", "laptop")
	stuck.Bind()
	done := s.StopAsync()

	relaytest.Eventually(t, relaytest.Timeout, "/readyz to answer 503", func() bool {
		resp, _ := s.Get(t, "/readyz")
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	if resp, _ := s.Get(t, "/healthz"); resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz while draining: %d, want 200", resp.StatusCode)
	}
	_, resp, err := s.DialWith(t, s.URL+"?token="+relaytest.Token(t, "bob"), nil)
	if err == nil {
		t.Fatal("new connection accepted while draining")
	}
	liveCheckRefusal(t, resp, http.StatusServiceUnavailable, "unavailable")
	select {
	case err := <-done:
		t.Fatalf("Serve returned (%v) while a client was still connected", err)
	default:
	}

	// The client reads the 1001, answers it and goes: Serve returns.
	if end := stuck.ReadUntilClose(); end.Code != ws.StatusGoingAway {
		t.Fatalf("stuck client: closed with %d (%v), want 1001", end.Code, end.Err)
	}
	liveServeResult(t, done, "after the last client closed")
}

func liveCheckRefusal(t *testing.T, resp *http.Response, status int, code string) {
	t.Helper()
	if resp == nil {
		t.Fatalf("no HTTP response, want %d", status)
	}
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d", resp.StatusCode, status)
	}
	b, _ := io.ReadAll(resp.Body)
	if !bytes.Contains(b, []byte(`"code":"`+code+`"`)) {
		t.Fatalf("body %s, want error code %s", b, code)
	}
}

func TestDrainTimeoutEndsServeDespiteAClientThatNeverCloses(t *testing.T) {
	t.Parallel() // waits on timers; runs alongside the other waiting tests
	s := relaytest.Start(t, relaytest.WithLimits(func(c *transport.Config) {
		c.DrainTimeout = 500 * time.Millisecond
		c.CloseGrace = time.Minute
	}))
	stuck := s.DialRaw(t, "alice", "laptop")
	stuck.Bind()
	done := s.StopAsync()
	liveServeResult(t, done, "although the drain timeout passed")
	// The client was told to go before the server gave up on it.
	f, err := stuck.ReadFrame(relaytest.Timeout)
	if err != nil {
		t.Fatalf("stuck client read nothing: %v", err)
	}
	if code, _ := ws.ParseCloseFrameData(f.Payload); f.Header.OpCode != ws.OpClose || code != ws.StatusGoingAway {
		t.Fatalf("stuck client got opcode %d code %d, want a close 1001", f.Header.OpCode, code)
	}
}

func TestClientInitiatedCloseIsEchoed(t *testing.T) {
	cases := []struct {
		name string
		code ws.StatusCode
	}{
		{"normal closure", ws.StatusNormalClosure},
		{"going away", ws.StatusGoingAway},
	}
	for _, tc := range cases {
		t.Run("raw client/"+tc.name, func(t *testing.T) {
			s := relaytest.Start(t)
			laptop := s.DialRaw(t, "alice", "laptop")
			laptop.Bind()
			phone := s.Dial(t, "alice", "phone")
			phone.Bind()
			laptop.WriteFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(tc.code, "bye")))
			laptop.ExpectClose(tc.code)
			if m := phone.Bind(); len(m.OnlinePeers) != 0 {
				t.Fatalf("closed client still listed as a peer: %s", m.Raw)
			}
		})
	}
	t.Run("library client", func(t *testing.T) {
		s := relaytest.Start(t)
		laptop := s.Dial(t, "alice", "laptop")
		laptop.Bind()
		// Close returns nil only when the server answers with the same code.
		if err := laptop.Conn.Close(websocket.StatusNormalClosure, "bye"); err != nil {
			t.Fatalf("close handshake: %v", err)
		}
	})
}
