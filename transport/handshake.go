package transport

import (
	"bufio"
	"bytes"
	"container/list"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gobwas/ws"

	"github.com/livestore-relay/livestore-relay/actors"
	"github.com/livestore-relay/livestore-relay/auth"
)

// requestLineMax bounds the request line the router looks at (tokens of up
// to 16 KiB ride in it); longer lines go to net/http, which answers them.
// Most lines fit the pooled readers of requestLineSmall bytes, so a flood of
// connections that never finish their request holds little memory.
const (
	requestLineMax   = 20 << 10
	requestLineSmall = 4 << 10
)

// handle routes one accepted connection: GET on the sync path goes through
// the WebSocket upgrader, everything else to net/http.
func (s *Server) handle(c net.Conn, hs *list.Element) {
	start := time.Now()
	_ = c.SetDeadline(start.Add(s.cfg.HandshakeTimeout))
	br := s.readers.Get().(*bufio.Reader)
	br.Reset(c)
	pooled := true
	release := func() {
		if pooled {
			br.Reset(nil)
			s.readers.Put(br)
		}
	}
	route := s.route(br)
	if route == routeGrow {
		// A long request line (a large token): go on with a larger reader
		// that starts with the bytes already read.
		b, _ := br.Peek(br.Buffered())
		big := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(append([]byte(nil), b...)), c), requestLineMax)
		release()
		br, pooled = big, false
		route = s.route(br)
	}
	switch route {
	case routeDrop:
		// Nothing or half a request line within the handshake timeout.
		s.pending.done(hs)
		s.metrics.handshakeRejected(0)
		_ = c.Close()
		release()
		return
	case routeHTTP:
		// net/http keeps br: it holds bytes of the request.
		_ = c.SetDeadline(time.Time{})
		s.httpConns.push(&peekedConn{Conn: c, r: br, hs: hs})
		return
	}
	h := s.handshakes.Get().(*handshake)
	h.begin(br, c, start)
	_, err := h.upgrader.Upgrade(&h.rw)
	s.pending.done(hs)
	if err != nil {
		h.refuse(err)
		h.end()
		release()
		if errors.Is(err, errHeadTooLarge) {
			lingerClose(c)
		}
		_ = c.Close()
		return
	}
	adm, ident := h.adm, h.ident
	h.end()
	s.metrics.handshakeDuration.Observe(time.Since(start).Seconds())
	_ = c.SetDeadline(time.Time{})
	// A client may send its first frames right behind the request.
	var pending []byte
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		pending = append([]byte(nil), b...)
	}
	release()
	var sock *socket
	if s.poller != nil {
		sock = detach(c, s.cfg.WriteTimeout, s.cfg.CloseGrace)
	}
	if sock == nil {
		sock = newSocket(c, s.cfg.WriteTimeout, s.cfg.CloseGrace)
	}
	sess := s.sys.Open(adm, sock, actors.ConnInfo{Expires: ident.Expires})
	if s.poller == nil {
		readLoop(c, pending, sess, s.cfg.MaxMessageBytes)
		return
	}
	if err := s.poller.add(sock, pending, sess, s.cfg.MaxMessageBytes); err != nil {
		s.log.Error().Err(err).Msg("cannot watch connection")
		_ = sock.Close()
		if sock.reader.Load() == nil {
			sess.Done()
		}
	}
}

// lingerClose lets a client that is still sending read the answer written
// to it: closing a socket with unread bytes would reset the connection and
// could discard the answer before the client reads it. It reads on for a
// short, bounded while, keeping nothing, as net/http does.
func lingerClose(c net.Conn) {
	if tc, ok := c.(interface{ CloseWrite() error }); ok {
		_ = tc.CloseWrite()
	}
	_ = c.SetReadDeadline(time.Now().Add(lingerTime))
	_, _ = io.CopyN(io.Discard, c, lingerBytes)
}

const (
	lingerTime  = 500 * time.Millisecond
	lingerBytes = 1 << 20
)

// Where a new connection's first request goes.
const (
	routeUpgrade = iota
	routeHTTP
	routeDrop
	routeGrow // the line is longer than the reader holds
)

// route peeks at the request line without consuming it, waiting only for
// bytes the line still lacks.
func (s *Server) route(br *bufio.Reader) int {
	if _, err := br.Peek(1); err != nil {
		return routeDrop
	}
	for {
		b, _ := br.Peek(br.Buffered())
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			rest, ok := bytes.CutPrefix(b[:i], []byte("GET "))
			if !ok {
				return routeHTTP
			}
			if end := bytes.IndexAny(rest, "? "); end >= 0 && string(rest[:end]) == SyncPath {
				return routeUpgrade
			}
			return routeHTTP
		}
		if len(b) >= br.Size() {
			if br.Size() < requestLineMax {
				return routeGrow
			}
			return routeHTTP // net/http answers an over-long line
		}
		if _, err := br.Peek(len(b) + 1); err != nil {
			return routeDrop
		}
	}
}

// handshake is the per-connection state of one upgrade, pooled with an
// Upgrader whose callbacks are bound to it once, so that an upgrade does
// not allocate closures.
type handshake struct {
	s        *Server
	upgrader ws.Upgrader
	rw       handshakeIO
	started  time.Time

	tokenQuery, tokenCookie   string
	hasQuery, hasCookie       bool
	origin, host              []byte
	hasOrigin, hasHost        bool
	ident                     auth.Identity
	adm                       *actors.Admission
	status                    int
	code, message, authReason string
}

// handshakeIO lets the upgrader read the request and write only a success
// response; refusals are written by the server itself, with a JSON body.
type handshakeIO struct {
	r      io.Reader
	w      io.Writer
	accept bool
	// The request head may take at most left more bytes. The upgrader
	// keeps a header line whole in memory however long it is, so this is
	// what bounds the memory of a handshake.
	left int
}

// errHeadTooLarge is a request head over Config.MaxHeaderBytes.
var errHeadTooLarge = errors.New("request head too large")

func (h *handshakeIO) Read(p []byte) (int, error) {
	if h.left <= 0 {
		return 0, errHeadTooLarge
	}
	n, err := h.r.Read(p[:min(len(p), h.left)])
	h.left -= n
	return n, err
}
func (h *handshakeIO) Write(p []byte) (int, error) {
	if !h.accept {
		return len(p), nil
	}
	return h.w.Write(p)
}

func newHandshake(s *Server) *handshake {
	h := &handshake{s: s}
	h.upgrader = ws.Upgrader{
		OnRequest:       h.onRequest,
		OnHost:          h.onHost,
		OnHeader:        h.onHeader,
		OnBeforeUpgrade: h.onBeforeUpgrade,
	}
	return h
}

func (h *handshake) begin(r io.Reader, c net.Conn, started time.Time) {
	h.rw = handshakeIO{r: r, w: c, left: h.s.cfg.MaxHeaderBytes}
	h.started = started
}

func (h *handshake) end() {
	*h = handshake{s: h.s, upgrader: h.upgrader, origin: h.origin[:0], host: h.host[:0]}
	h.s.handshakes.Put(h)
}

func (h *handshake) onRequest(uri []byte) error {
	h.tokenQuery, h.hasQuery = auth.TokenFromQuery(uri)
	return nil
}

// A second Host or Origin header is refused rather than one of them
// chosen: a proxy in front might act on the other one.
func (h *handshake) onHost(host []byte) error {
	if h.hasHost {
		return h.refuseWith(http.StatusBadRequest, "bad_request", "more than one Host header")
	}
	h.host = append(h.host[:0], host...)
	h.hasHost = true
	return nil
}

func (h *handshake) onHeader(key, value []byte) error {
	switch {
	case bytes.EqualFold(key, []byte("Origin")):
		if h.hasOrigin {
			return h.refuseWith(http.StatusBadRequest, "bad_request", "more than one Origin header")
		}
		h.origin = append(h.origin[:0], value...)
		h.hasOrigin = true
	case bytes.EqualFold(key, []byte("Cookie")) && !h.hasCookie:
		h.tokenCookie, h.hasCookie = auth.TokenFromCookie(value)
	}
	return nil
}

var errRefused = errors.New("upgrade refused")

func (h *handshake) refuseWith(status int, code, message string) error {
	h.status, h.code, h.message = status, code, message
	return errRefused
}

// onBeforeUpgrade runs once every header has been read. The order of checks
// is: draining, origin, token, connection limits.
func (h *handshake) onBeforeUpgrade() (ws.HandshakeHeader, error) {
	s := h.s
	if s.draining.Load() {
		return nil, h.refuseWith(http.StatusServiceUnavailable, "unavailable", "server is draining")
	}
	if h.hasOrigin && !s.cfg.Origins.Allow(h.origin, h.host) {
		return nil, h.refuseWith(http.StatusForbidden, "forbidden_origin", "origin not allowed")
	}
	token := h.tokenCookie
	if h.hasQuery {
		token = h.tokenQuery // a query token is never overridden by a cookie
	}
	ident, err := s.cfg.Verifier.Verify(token)
	if err != nil {
		reason := auth.ReasonOf(err)
		s.metrics.authFailure(reason)
		h.authReason = string(reason)
		return nil, h.refuseWith(http.StatusUnauthorized, "unauthorized", "invalid token: "+string(reason))
	}
	ctx, cancel := context.WithDeadline(context.Background(), h.started.Add(s.cfg.HandshakeTimeout))
	adm, err := s.sys.Admit(ctx, ident.UserID)
	cancel()
	switch {
	case errors.Is(err, actors.ErrUserLimit):
		return nil, h.refuseWith(http.StatusTooManyRequests, "too_many_connections", "connection limit for this user reached")
	case err != nil:
		return nil, h.refuseWith(http.StatusServiceUnavailable, "unavailable", "server cannot take more connections")
	}
	h.ident, h.adm = ident, adm
	h.rw.accept = true
	return nil, nil
}

// refuse answers a failed upgrade.
func (h *handshake) refuse(err error) {
	s := h.s
	if h.adm != nil {
		h.adm.Cancel() // the 101 could not be written
	}
	status, body, extra := h.status, "", ""
	if errors.Is(err, errRefused) {
		body = `{"type":"error","code":"` + h.code + `","message":"` + h.message + `"}`
	} else {
		var rej *ws.ConnectionRejectedError
		switch {
		case errors.Is(err, errHeadTooLarge):
			status = http.StatusRequestHeaderFieldsTooLarge
		case errors.Is(err, ws.ErrHandshakeBadUpgrade), errors.Is(err, ws.ErrHandshakeBadConnection):
			status, extra = http.StatusUpgradeRequired, "Upgrade: websocket\r\n"
		case errors.Is(err, ws.ErrHandshakeUpgradeRequired), errors.Is(err, ws.ErrHandshakeBadSecVersion):
			status, extra = http.StatusUpgradeRequired, "Sec-WebSocket-Version: 13\r\n"
		case errors.As(err, &rej):
			status = rej.StatusCode()
		default:
			// The connection failed or timed out mid-request.
			s.metrics.handshakeRejected(0)
			return
		}
		if status == 0 {
			status = http.StatusBadRequest
		}
		code := "bad_request"
		switch status {
		case http.StatusUpgradeRequired:
			code = "upgrade_required"
		case http.StatusRequestHeaderFieldsTooLarge:
			code = "headers_too_large"
		}
		body = `{"type":"error","code":"` + code + `","message":"` + http.StatusText(status) + `"}`
	}
	s.metrics.handshakeRejected(status)
	// Debug only: refusals can come in floods. Never the token itself.
	s.log.Debug().Int("status", status).Str("code", h.code).Str("auth", h.authReason).Msg("upgrade refused")
	ctype := "application/json"
	resp := "HTTP/1.1 " + strconv.Itoa(status) + " " + http.StatusText(status) + "\r\n" +
		"Content-Type: " + ctype + "\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n" +
		extra + "Connection: close\r\n\r\n" + body
	_, _ = io.WriteString(h.rw.w, resp)
}

// peekedConn is a connection whose first bytes sit in r.
type peekedConn struct {
	net.Conn
	r  *bufio.Reader
	hs *list.Element // its place among the pending handshakes
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// chanListener hands connections the router gave up on to net/http.
type chanListener struct {
	addr   net.Addr
	ch     chan net.Conn
	done   chan struct{}
	closed sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) push(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.done:
		_ = c.Close()
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.closed.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }
