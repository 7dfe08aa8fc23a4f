package transport

import (
	"io"
	"net"
	"time"

	"github.com/livestore-relay/livestore-relay/actors"
)

// Readers: how an upgraded connection's bytes reach its frame parser.
const (
	// ReaderEpoll waits for readable sockets with Linux epoll and reads them
	// from a small pool of workers, so an idle connection holds no goroutine
	// and no buffer.
	ReaderEpoll = "epoll"
	// ReaderGoroutine reads each connection from a goroutine of its own. It
	// works on every platform.
	ReaderGoroutine = "goroutine"
)

// goroutineReadBuffer is the read buffer of a connection in goroutine mode.
const goroutineReadBuffer = 4 << 10

// readLoop reads one connection from the calling goroutine until it ends.
// pending holds bytes already read during the handshake.
func readLoop(c net.Conn, pending []byte, sess *actors.Session, maxMessage int) {
	defer sess.Done()
	f := frameParser{sess: sess, max: maxMessage}
	var r actors.CloseReason
	if len(pending) > 0 {
		r = f.feed(pending, time.Now())
	}
	buf := make([]byte, goroutineReadBuffer)
	for r == 0 {
		n, err := c.Read(buf)
		if n > 0 {
			r = f.feed(buf[:n], time.Now())
		}
		if err != nil && r == 0 {
			return
		}
	}
	fail(sess, r)
	// The close is decided; wait for the peer to close its side (or the
	// grace period the writer set) so that closing the socket does not
	// reset a connection whose close frame is still unread.
	_, _ = io.CopyBuffer(io.Discard, c, buf)
}

// fail gives the session the reason the parser found to close, unless the
// peer's own close frame ended reading (the session has had it).
func fail(sess *actors.Session, r actors.CloseReason) {
	if r != actors.ClosePeer {
		sess.Fail(r)
	}
}
