// Package relaytest runs a real relay on 127.0.0.1 for tests and drives it
// with real WebSocket clients (a different implementation than the
// server's) and real JWTs.
package relaytest

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/rs/zerolog"

	"github.com/livestore-relay/livestore-relay/auth"
	"github.com/livestore-relay/livestore-relay/protocol"
	"github.com/livestore-relay/livestore-relay/transport"
)

// Secret is the HS256 secret every test server accepts.
var Secret = []byte("relaytest-secret-0123456789abcdef")

// Server is a relay listening on 127.0.0.1 for the length of a test.
type Server struct {
	// Addr is host:port; URL the ws:// address of the sync path; HTTP the
	// http:// base address.
	Addr, URL, HTTP string
	Config          transport.Config
	srv             *transport.Server
	cancel          context.CancelFunc
	done            chan error
	stopped         bool
}

// Option changes the configuration of a test server before it starts.
type Option func(*transport.Config, *auth.Config)

// Start runs a relay with the defaults of the real binary, changed by opts,
// and stops it when the test ends.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	ac := auth.Config{Secret: Secret, Leeway: 30 * time.Second}
	origins, err := auth.NewOriginPolicy(nil)
	if err != nil {
		t.Fatal(err)
	}
	// RELAYTEST_READER runs the same tests against another socket reader.
	cfg := transport.Config{Origins: origins, Logger: zerolog.New(io.Discard), AsyncAPI: protocol.AsyncAPI(),
		Reader: os.Getenv("RELAYTEST_READER")}
	for _, o := range opts {
		o(&cfg, &ac)
	}
	v, err := auth.NewVerifier(ac)
	if err != nil {
		t.Fatalf("verifier: %v", err)
	}
	cfg.Verifier = v
	srv, err := transport.New(cfg)
	if err != nil {
		t.Fatalf("new server: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		Addr: ln.Addr().String(), Config: cfg, srv: srv, cancel: cancel, done: make(chan error, 1),
	}
	s.URL = "ws://" + s.Addr + transport.SyncPath
	s.HTTP = "http://" + s.Addr
	go func() { s.done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() { s.Stop(t) })
	return s
}

// Stop drains the server and waits for Serve to return.
func (s *Server) Stop(t testing.TB) {
	if s.stopped {
		return
	}
	s.stopped = true
	s.cancel()
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(s.drainTimeout() + 10*time.Second):
		t.Errorf("server did not stop")
	}
}

func (s *Server) drainTimeout() time.Duration {
	if s.Config.DrainTimeout > 0 {
		return s.Config.DrainTimeout
	}
	return 10 * time.Second
}

// StopAsync starts draining and returns a channel that yields Serve's result.
func (s *Server) StopAsync() <-chan error {
	s.stopped = true
	s.cancel()
	return s.done
}

// Token returns a valid HS256 token for user, expiring in an hour.
func Token(t testing.TB, user string) string {
	t.Helper()
	tok, err := auth.Mint(Secret, user, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// SignedToken signs claims with method and key.
func SignedToken(t testing.TB, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Get performs a plain HTTP GET against the server.
func (s *Server) Get(t testing.TB, path string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(s.HTTP + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// Metric scrapes /metrics and returns the value of the series name with
// the given labels (name=value pairs), or 0 when it does not exist.
func (s *Server) Metric(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	resp, err := http.Get(s.HTTP + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse metrics: %v", err)
	}
	fam := fams[name]
	if fam == nil {
		return 0
	}
	for _, m := range fam.GetMetric() {
		if labelsMatch(m, labels) {
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return 0
}

func labelsMatch(m *dto.Metric, want []string) bool {
	for i := 0; i+1 < len(want); i += 2 {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == want[i] && l.GetValue() == want[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// Eventually polls cond every 10 ms until it holds or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// WithLimits changes the server configuration.
func WithLimits(f func(c *transport.Config)) Option {
	return func(c *transport.Config, _ *auth.Config) { f(c) }
}

// WithAuth changes the verifier's configuration.
func WithAuth(f func(a *auth.Config)) Option {
	return func(_ *transport.Config, a *auth.Config) { f(a) }
}
