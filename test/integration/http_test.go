package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/livestore-relay/livestore-relay/test/relaytest"
	"github.com/livestore-relay/livestore-relay/transport"
)

func TestHTTPEndpointsAnswerWithTheirStatus(t *testing.T) {
	s := relaytest.Start(t)
	cases := []struct {
		path   string
		status int
	}{
		{"/healthz", http.StatusOK},
		{"/readyz", http.StatusOK},
		{"/metrics", http.StatusOK},
		{"/api/v1/livestore/asyncapi.yaml", http.StatusOK},
		{"/api/v1/livestore/sync", http.StatusUpgradeRequired},
		{"/api/v1/livestore/sync?token=" + relaytest.Token(t, "alice"), http.StatusUpgradeRequired},
		{"/", http.StatusNotFound},
		{"/nope", http.StatusNotFound},
		{"/api/v1/livestore", http.StatusNotFound},
		{"/api/v1/livestore/sync/more", http.StatusNotFound},
		{"/api/v1/livestore/asyncapi.json", http.StatusNotFound},
		{"/healthz/more", http.StatusNotFound},
		{"/metricsz", http.StatusNotFound},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			resp, body := s.Get(t, c.path)
			if resp.StatusCode != c.status {
				t.Fatalf("GET %s: status %d (body %q), want %d", c.path, resp.StatusCode, body, c.status)
			}
		})
	}
}

func TestUpgradeOnAnotherPathIsNotFound(t *testing.T) {
	s := relaytest.Start(t)
	for _, path := range []string{"/", "/sync", "/api/v1/livestore/sync/more", "/api/v1/livestore/syncx"} {
		t.Run(path, func(t *testing.T) {
			_, resp, err := s.DialWith(t, "ws://"+s.Addr+path+"?token="+relaytest.Token(t, "alice"), nil)
			if err == nil {
				t.Fatalf("upgrade on %s accepted", path)
			}
			if statusOf(resp) != http.StatusNotFound {
				t.Fatalf("upgrade on %s: status %d, want 404", path, statusOf(resp))
			}
		})
	}
}

func TestMetricsAreServedInPrometheusTextFormat(t *testing.T) {
	s := relaytest.Start(t)
	c := s.Dial(t, "alice", "laptop")
	c.Bind()
	resp, err := http.Get(s.HTTP + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("Content-Type %q, want the text exposition format", ct)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("not Prometheus text: %v", err)
	}
	var relay []string
	for name := range fams {
		if strings.HasPrefix(name, "livestore_relay_") {
			relay = append(relay, name)
		}
	}
	if len(relay) == 0 {
		t.Fatalf("no livestore_relay_ metric among %d families", len(fams))
	}
}

func TestAsyncAPIDocumentDescribesTheSyncChannel(t *testing.T) {
	s := relaytest.Start(t)
	resp, body := s.Get(t, "/api/v1/livestore/asyncapi.yaml")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if !strings.HasPrefix(body, "asyncapi:") || !strings.Contains(body, transport.SyncPath) {
		t.Fatalf("not the channel's AsyncAPI document:\n%.300s", body)
	}
}

// dialUser tries once to connect user with a valid token.
func dialUser(t *testing.T, s *relaytest.Server, user string) (*relaytest.Client, *http.Response, error) {
	t.Helper()
	return s.DialWith(t, tokenURL(s, relaytest.Token(t, user)), nil)
}

// awaitAdmitted dials user until the relay admits it and returns the
// connection as device clientID.
func awaitAdmitted(t *testing.T, s *relaytest.Server, user, clientID string) *relaytest.Client {
	t.Helper()
	var c *relaytest.Client
	relaytest.Eventually(t, relaytest.Timeout, user+" admitted again", func() bool {
		got, _, err := dialUser(t, s, user)
		c = got
		return err == nil
	})
	c.ClientID, c.SessionID = clientID, clientID+"-session"
	return c
}

func TestPerUserConnectionLimitRefusesWith429UntilASlotFrees(t *testing.T) {
	s := relaytest.Start(t, relaytest.WithLimits(func(c *transport.Config) { c.Actors.MaxConnsPerUser = 2 }))
	bound := s.Dial(t, "alice", "laptop")
	bound.Bind()
	unbound := s.Dial(t, "alice", "phone")

	// Bound or not, both connections count.
	_, resp, err := dialUser(t, s, "alice")
	checkRefusal(t, resp, err, http.StatusTooManyRequests, "too_many_connections")

	// Other users are not limited by alice's connections.
	s.Dial(t, "bob", "laptop").Bind()

	bound.Close()
	tablet := awaitAdmitted(t, s, "alice", "tablet")
	_, resp, err = dialUser(t, s, "alice")
	checkRefusal(t, resp, err, http.StatusTooManyRequests, "too_many_connections")

	unbound.Close()
	watch := awaitAdmitted(t, s, "alice", "watch")
	expectRelayed(t, tablet, watch)
}

func TestGlobalConnectionLimitRefusesWith503UntilASlotFrees(t *testing.T) {
	s := relaytest.Start(t, relaytest.WithLimits(func(c *transport.Config) { c.Actors.MaxConns = 2 }))
	alice := s.Dial(t, "alice", "laptop")
	alice.Bind()
	bob := s.Dial(t, "bob", "laptop")

	for _, user := range []string{"carol", "alice"} {
		_, resp, err := dialUser(t, s, user)
		checkRefusal(t, resp, err, http.StatusServiceUnavailable, "unavailable")
	}

	bob.Close()
	carol := awaitAdmitted(t, s, "carol", "laptop")
	carol.Bind()
	_, resp, err := dialUser(t, s, "dave")
	checkRefusal(t, resp, err, http.StatusServiceUnavailable, "unavailable")
}

func TestDrainTurnsReadyzAndUpgradesTo503AndClosesConnectionsWith1001(t *testing.T) {
	s := relaytest.Start(t, relaytest.WithLimits(func(c *transport.Config) {
		// A connection that does not answer the close frame holds the drain
		// open for as long as this test needs.
		c.DrainTimeout = time.Minute
		c.CloseGrace = time.Minute
	}))
	bound := s.Dial(t, "alice", "laptop")
	bound.Bind()
	unbound := s.Dial(t, "alice", "phone")

	done := s.StopAsync()
	relaytest.Eventually(t, relaytest.Timeout, "/readyz to answer 503", func() bool {
		resp, _ := s.Get(t, "/readyz")
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	if resp, _ := s.Get(t, "/healthz"); resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz while draining: %d, want 200", resp.StatusCode)
	}
	_, resp, err := dialUser(t, s, "bob")
	checkRefusal(t, resp, err, http.StatusServiceUnavailable, "unavailable")
	select {
	case err := <-done:
		t.Fatalf("server stopped (%v) while connections were still open", err)
	default:
	}

	bound.ExpectClose(websocket.StatusGoingAway)
	unbound.ExpectClose(websocket.StatusGoingAway)
	// Every connection has closed: the drain ends without waiting for its
	// timeout of a minute.
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(2 * relaytest.Timeout):
		t.Fatal("server still draining after every connection closed")
	}
}

// expectPullAnswered sends a pull on a raw connection and fails unless the
// relay answers it with a pull_response.
func expectPullAnswered(t *testing.T, conn *websocket.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), relaytest.Timeout)
	defer cancel()
	pull := `{"type":"pull","clientId":"laptop","sessionId":"s1","timestamp":1,"payload":{}}`
	if err := conn.Write(ctx, websocket.MessageText, []byte(pull)); err != nil {
		t.Fatal(err)
	}
	if _, b, err := conn.Read(ctx); err != nil || !strings.Contains(string(b), `"pull_response"`) {
		t.Fatalf("pull answered with %s (%v)", b, err)
	}
}

func TestUpgradeIsAnsweredWhateverTheTokenLength(t *testing.T) {
	s := relaytest.Start(t)
	// Tokens from about 150 bytes to about 8 KiB; a claim pads them. Each
	// upgrade gets a connection of its own, so that one answered wrongly
	// cannot spoil the next.
	for pad := 0; pad <= 6000; pad += 150 {
		t.Run(fmt.Sprintf("padding %d", pad), func(t *testing.T) {
			t.Parallel()
			padded := func(c jwt.MapClaims) { c["pad"] = strings.Repeat("p", pad) }
			tok := hs256(t, claimsFor("alice", padded))
			conn, resp, err := dialFresh(t, tokenURL(s, tok), nil, "")
			if err != nil {
				t.Fatalf("token of %d bytes: upgrade failed with status %d: %.200v", len(tok), statusOf(resp), err)
			}
			expectPullAnswered(t, conn)

			bad := hs256(t, claimsFor("", padded))
			_, resp, err = dialFresh(t, tokenURL(s, bad), nil, "")
			checkRefusal(t, resp, err, http.StatusUnauthorized, "unauthorized")
		})
	}
}

func TestUpgradeFromAClientThatMadePlainRequestsBeforeSucceeds(t *testing.T) {
	s := relaytest.Start(t)
	// One client, one connection pool, as a backend service would use it:
	// whatever the relay does with the connections of earlier requests, a
	// later upgrade must work.
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	get := func(path string, want int) {
		t.Helper()
		resp, err := client.Get(s.HTTP + path)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	dial := func(tok string) (*websocket.Conn, *http.Response, error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), relaytest.Timeout)
		defer cancel()
		conn, resp, err := websocket.Dial(ctx, tokenURL(s, tok), &websocket.DialOptions{HTTPClient: client})
		if err == nil {
			t.Cleanup(func() { _ = conn.CloseNow() })
		}
		return conn, resp, err
	}
	get("/healthz", http.StatusOK)
	get("/readyz", http.StatusOK)
	get(transport.SyncPath, http.StatusUpgradeRequired)
	_, resp, err := dial("not-a-token")
	checkRefusal(t, resp, err, http.StatusUnauthorized, "unauthorized")
	get("/healthz", http.StatusOK)

	conn, resp, err := dial(relaytest.Token(t, "alice"))
	if err != nil {
		t.Fatalf("upgrade refused: status %d: %.200v", statusOf(resp), err)
	}
	expectPullAnswered(t, conn)
}
