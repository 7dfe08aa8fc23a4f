// Package transport accepts TCP connections, answers the relay's HTTP
// surface, upgrades the sync path to WebSocket with a zero-copy handshake,
// and reads frames into the actor layer.
package transport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/livestore-relay/livestore-relay/actors"
	"github.com/livestore-relay/livestore-relay/auth"
)

// SyncPath is where the sync channel is served.
const SyncPath = "/api/v1/livestore/sync"

// AsyncAPIPath serves the channel's AsyncAPI document.
const AsyncAPIPath = "/api/v1/livestore/asyncapi.yaml"

// DevTokenPath serves development tokens, and only when Config.DevToken is set.
const DevTokenPath = "/dev/token"

// Defaults of Config: a size or duration left zero (or negative) takes its
// default. The relay's flags take theirs from here too.
const (
	DefaultMaxMessageBytes  = 1 << 20
	DefaultMaxHeaderBytes   = 32 << 10
	DefaultMaxHandshakes    = 1024
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultWriteTimeout     = 10 * time.Second
	DefaultCloseGrace       = 2 * time.Second
	DefaultDrainTimeout     = 10 * time.Second
)

// Config describes a server. The zero value of each duration or size means
// the default named in its comment.
type Config struct {
	MaxMessageBytes  int           // DefaultMaxMessageBytes
	MaxHeaderBytes   int           // DefaultMaxHeaderBytes: the request line and headers of an upgrade
	MaxHandshakes    int           // DefaultMaxHandshakes: connections not yet through their handshake
	HandshakeTimeout time.Duration // DefaultHandshakeTimeout
	WriteTimeout     time.Duration // DefaultWriteTimeout: a socket that takes no bytes for this long is a slow consumer
	CloseGrace       time.Duration // DefaultCloseGrace: how long to wait for the peer's close reply
	DrainTimeout     time.Duration // DefaultDrainTimeout
	Verifier         *auth.Verifier
	Origins          auth.OriginPolicy
	Actors           actors.Config // its Logger and Metrics are filled in by New
	Logger           zerolog.Logger
	// Registry receives the metrics; nil means a new registry with the Go
	// and process collectors.
	Registry *prometheus.Registry
	AsyncAPI []byte // served at AsyncAPIPath
	// Reader is ReaderEpoll or ReaderGoroutine; "" is DefaultReader (epoll
	// on Linux, goroutine elsewhere).
	Reader string
	// DevToken, when set, answers GET DevTokenPath?user=U with a token for
	// U, so that a local web app can sign in without a backend of its own.
	// Development mode only: anyone who reaches the address gets a token
	// for any user. Nil: the path is not found, like any other.
	DevToken func(user string) (string, error)
}

func (c *Config) setDefaults() {
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if c.MaxHandshakes <= 0 {
		c.MaxHandshakes = DefaultMaxHandshakes
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.CloseGrace <= 0 {
		c.CloseGrace = DefaultCloseGrace
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.Reader == "" {
		c.Reader = DefaultReader
	}
}

// Server is the relay's network front.
type Server struct {
	cfg        Config
	log        zerolog.Logger
	warn       zerolog.Logger
	sys        *actors.System
	reg        *prometheus.Registry
	metrics    *metrics
	httpSrv    *http.Server
	httpConns  *chanListener
	handshakes sync.Pool // *handshake
	readers    sync.Pool // *bufio.Reader for the request line
	pending    *pendingHandshakes
	draining   atomic.Bool
	poller     *poller // nil with the goroutine reader
}

// New builds a server and starts its actor system.
func New(cfg Config) (*Server, error) {
	cfg.setDefaults()
	if cfg.Verifier == nil {
		return nil, errors.New("transport: Config.Verifier is required")
	}
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	// Warnings that a flood could repeat (accept failures) are sampled.
	s := &Server{cfg: cfg, log: cfg.Logger, reg: reg,
		warn: cfg.Logger.Sample(&zerolog.BurstSampler{Burst: 5, Period: 10 * time.Second})}
	switch cfg.Reader {
	case ReaderEpoll:
		p, err := newPoller(cfg.Logger)
		if err != nil {
			return nil, err
		}
		s.poller = p
	case ReaderGoroutine:
	default:
		return nil, fmt.Errorf("transport: unknown reader %q", cfg.Reader)
	}
	s.metrics = newMetrics(reg)
	s.pending = &pendingHandshakes{max: cfg.MaxHandshakes, gauge: s.metrics.handshakesPending, shed: s.metrics.handshakesShed}
	ac := cfg.Actors
	ac.Logger = cfg.Logger
	ac.Metrics = actors.NewMetrics(reg)
	sys, err := actors.NewSystem(ac)
	if err != nil {
		return nil, fmt.Errorf("start actor system: %w", err)
	}
	s.sys = sys
	s.handshakes.New = func() any { return newHandshake(s) }
	s.readers.New = func() any { return bufio.NewReaderSize(nil, requestLineSmall) }
	s.httpSrv = &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: cfg.HandshakeTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		// A connection handed to net/http counts as a pending handshake
		// until its request has been read.
		ConnState: func(c net.Conn, st http.ConnState) {
			if pc, ok := c.(*peekedConn); ok && st != http.StateNew {
				s.pending.done(pc.hs)
			}
		},
		WriteTimeout: 30 * time.Second,
		IdleTimeout:  60 * time.Second,
	}
	// Only a connection's first request is routed to the WebSocket
	// upgrader, so net/http must not keep a connection for a second one:
	// an upgrade sent on it would reach net/http and be refused.
	s.httpSrv.SetKeepAlivesEnabled(false)
	return s, nil
}

// Serve accepts connections on ln until ctx is done, then drains: /readyz
// and new upgrades answer 503, every connection is closed with 1001, and
// Serve returns once all have closed or the drain timeout has passed.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.httpConns = newChanListener(ln.Addr())
	httpDone := make(chan struct{})
	go func() {
		defer close(httpDone)
		_ = s.httpSrv.Serve(s.httpConns)
	}()
	acceptDone := make(chan error, 1)
	go func() { acceptDone <- s.acceptLoop(ln) }()

	var acceptErr error
	select {
	case <-ctx.Done():
	case acceptErr = <-acceptDone:
		acceptDone = nil
	}
	s.draining.Store(true)
	s.sys.Drain()
	s.log.Info().Dur("drain_timeout", s.cfg.DrainTimeout).Msg("draining")
	dctx, cancel := context.WithTimeout(context.Background(), s.cfg.DrainTimeout)
	defer cancel()
	if err := s.sys.Wait(dctx); err != nil {
		s.log.Warn().Msg("drain timeout passed with connections still open; closing them")
		s.sys.Abort()
		actx, acancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = s.sys.Wait(actx)
		acancel()
	}
	_ = ln.Close()
	if acceptDone != nil {
		<-acceptDone
	}
	s.httpConns.Close()
	sctx, scancel := context.WithTimeout(context.Background(), time.Second)
	defer scancel()
	_ = s.httpSrv.Shutdown(sctx)
	<-httpDone
	s.sys.Shutdown()
	if s.poller != nil {
		s.poller.close()
	}
	return acceptErr
}

func (s *Server) acceptLoop(ln net.Listener) error {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of file descriptors and the like: back off instead of
			// spinning, as net/http does.
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
					// A descriptor held by an unfinished handshake is
					// better spent on the connection waiting behind it.
					s.pending.shedOldest()
				}
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.warn.Warn().Err(err).Dur("retry_in", delay).Msg("accept failed")
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		delay = 0
		// Registered here, in accept order, so that the oldest is shed first.
		hs := s.pending.add(c)
		go s.handle(c, hs)
	}
}

func isTemporary(err error) bool {
	t, ok := err.(interface{ Temporary() bool })
	return ok && t.Temporary()
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if s.draining.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("draining\n"))
			return
		}
		if !s.sys.Ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("joining the cluster\n"))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{Registry: s.reg}))
	mux.HandleFunc("GET "+AsyncAPIPath, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(s.cfg.AsyncAPI)
	})
	mux.HandleFunc("GET "+SyncPath, func(w http.ResponseWriter, _ *http.Request) {
		// Upgrades never reach net/http; a plain GET does (with a request
		// line too long for the router, say).
		w.Header().Set("Upgrade", "websocket")
		http.Error(w, "websocket upgrade required", http.StatusUpgradeRequired)
	})
	if s.cfg.DevToken != nil {
		mux.HandleFunc("GET "+DevTokenPath, s.devToken)
	}
	mux.HandleFunc("/", http.NotFound)
	// Only the requests in the table are answered; any other method on a
	// known path is "anything else": 404, not the mux's 405.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.NotFound(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// maxDevUserBytes bounds the user of a development token; user ids of real
// tokens are bounded only by the message size.
const maxDevUserBytes = 128

func (s *Server) devToken(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	user := r.URL.Query().Get("user")
	if user == "" || len(user) > maxDevUserBytes {
		http.Error(w, "user: 1 to 128 bytes required", http.StatusBadRequest)
		return
	}
	tok, err := s.cfg.DevToken(user)
	if err != nil {
		s.log.Error().Err(err).Msg("development token")
		http.Error(w, "no token", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte(tok + "\n"))
}
