package transport

import (
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/livestore-relay/livestore-relay/transport/wsframe"
)

// socket is the write side of an upgraded connection, as the connection
// actor uses it (actors.Socket says who calls what). Only that actor
// writes; Close may come from any goroutine. Writes go straight to the
// descriptor and never wait: a full socket is left to Wait, so the actor
// can run on the goroutine that handed it its frames.
//
// A socket read by the epoll reader holds its descriptor alone (c is nil,
// fdsocket_linux.go): once upgraded, the connection needs nothing from
// Go's net package, whose connection state and poller registration would
// cost an idle connection about 600 bytes. With the goroutine reader the
// socket keeps its net.Conn, which that reader reads.
type socket struct {
	c  net.Conn        // nil: the descriptor is the socket's alone
	rc syscall.RawConn // with c: the descriptor as the runtime's poller knows it (Wait); nil with c: writes block
	// fd is the descriptor's number, for the reads and writes made on it
	// directly (write_unix.go); refs keeps it from being closed, and its
	// number reused by another connection, while one of them is under way.
	fd           int
	refs         atomic.Int32 // raw calls in flight, plus fdClosed and fdReleased
	writeTimeout time.Duration
	closeGrace   time.Duration
	// reader is the connection's place in the epoll reader, nil with the
	// goroutine reader (whose blocked Read ends by itself on Close or at
	// the read deadline).
	reader atomic.Pointer[pconn]
	// out is the Wait under way on a socket without c: the epoll reader
	// or its timer ends it.
	out atomic.Pointer[outWait]
}

func newSocket(c net.Conn, writeTimeout, closeGrace time.Duration) *socket {
	s := &socket{c: c, fd: -1, writeTimeout: writeTimeout, closeGrace: closeGrace}
	if sc, ok := c.(syscall.Conn); ok && rawWrites {
		if rc, err := sc.SyscallConn(); err == nil {
			if rc.Control(func(fd uintptr) { s.fd = int(fd) }) == nil {
				s.rc = rc
			}
		}
	}
	return s
}

const (
	fdClosed   = 1 << 29 // Close was called: no new raw call starts
	fdReleased = 1 << 30 // the descriptor is closed
)

// use starts a raw call on s.fd; false once Close was called.
func (s *socket) use() bool {
	if s.refs.Add(1)&fdClosed != 0 {
		s.unuse()
		return false
	}
	return true
}

// unuse ends a raw call. The last one to end after Close closes the
// descriptor.
func (s *socket) unuse() {
	if s.refs.Add(-1) == fdClosed {
		_ = s.release()
	}
}

// release closes the descriptor once, when no raw call is under way.
func (s *socket) release() error {
	if !s.refs.CompareAndSwap(fdClosed, fdClosed|fdReleased) {
		return nil // a raw call is under way, and its end will; or done already
	}
	if s.c == nil {
		return closeFD(s.fd)
	}
	return s.c.Close()
}

func (s *socket) Write(frames [][]byte) (int, error) {
	if s.fd < 0 {
		return s.writeBlocking(frames)
	}
	return s.writeRaw(frames)
}

// writeBlocking is for a connection without a descriptor it can write
// itself: it writes everything, under the write timeout.
func (s *socket) writeBlocking(frames [][]byte) (int, error) {
	if err := s.c.SetWriteDeadline(time.Now().Add(s.writeTimeout)); err != nil {
		return 0, err
	}
	bufs := net.Buffers(frames)
	n, err := bufs.WriteTo(s.c)
	return int(n), err
}

func (s *socket) Wait(closing bool, ready func(error)) {
	d := s.writeTimeout
	if closing {
		d = min(d, time.Second+s.closeGrace)
	}
	if s.c == nil {
		s.waitOut(d, ready)
		return
	}
	if s.rc == nil {
		go ready(nil)
		return
	}
	if err := s.c.SetWriteDeadline(time.Now().Add(d)); err != nil {
		go ready(err)
		return
	}
	// The goroutine only waits, through the runtime's poller, which also
	// enforces the deadline; the actor writes when told. Only a socket that
	// filled up costs one.
	go func() {
		waited := false
		err := s.rc.Write(func(uintptr) bool {
			done := waited
			waited = true
			return done // false: wait until the descriptor is writable
		})
		if err == nil {
			// A later write must not find the deadline passed.
			err = s.c.SetWriteDeadline(time.Time{})
		}
		ready(err)
	}()
}

func (s *socket) CloseFrame(code uint16, reason string) []byte { return wsframe.Close(code, reason) }

func (s *socket) Shut() {
	// Half-close so the peer reads the close frame and then the end of the
	// stream, while the reader keeps reading until the peer closes its side.
	if s.c == nil {
		s.shutWrite()
	} else if tc, ok := s.c.(interface{ CloseWrite() error }); ok {
		_ = tc.CloseWrite()
	}
	if pc := s.reader.Load(); pc != nil {
		// The epoll reader has no read deadline to end a lingering close:
		// the timer's goroutine does, through what is safe from anywhere.
		time.AfterFunc(s.closeGrace, pc.expire)
	}
	if s.c != nil {
		_ = s.c.SetReadDeadline(time.Now().Add(s.closeGrace))
	}
}

func (s *socket) Close() error {
	var err error
	if s.refs.Or(fdClosed)&fdClosed == 0 {
		err = s.release()
		if w := s.out.Load(); w != nil {
			s.endWait(w, net.ErrClosed)
		}
	}
	if pc := s.reader.Load(); pc != nil {
		pc.finish() // no readiness event will come for a closed descriptor
	}
	return err
}

func (s *socket) RemoteAddr() string {
	if s.c == nil {
		return s.peerName()
	}
	return s.c.RemoteAddr().String()
}

// outWait is one Wait on a socket without c. It ends once, by whichever
// comes first: the reader's report, its timer, or Close.
type outWait struct {
	ready func(error)
	done  atomic.Bool
	mu    sync.Mutex // guards timer between waitOut and endWait
	timer *time.Timer
}

// endWait ends w with err, once.
func (s *socket) endWait(w *outWait, err error) {
	if !w.done.CompareAndSwap(false, true) {
		return
	}
	s.out.CompareAndSwap(w, nil)
	w.mu.Lock()
	if w.timer != nil {
		w.timer.Stop()
	}
	w.mu.Unlock()
	if pc := s.reader.Load(); pc != nil && err == nil {
		// Before ready: the writer's next Wait turns the reports on again.
		pc.watchOut(false)
	}
	go w.ready(err)
}
