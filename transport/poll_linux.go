//go:build linux

package transport

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/livestore-relay/livestore-relay/actors"
)

const (
	pollReadBuffer = 64 << 10 // one per worker, not per connection
	pollEvents     = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT
)

// poller reads every upgraded connection without a goroutine per
// connection: one goroutine waits in epoll_wait, and a fixed pool of
// workers reads whichever sockets are ready. Registrations are one-shot and
// re-armed after each read, so a connection is read by one worker at a time.
type poller struct {
	epfd  int
	wake  int // eventfd that ends epoll_wait on close
	work  chan *pconn
	mu    sync.Mutex
	conns map[uint64]*pconn
	next  uint64
	wg    sync.WaitGroup
}

// pconn is one connection in the poller. parser and draining belong to
// whichever worker holds the one-shot event.
type pconn struct {
	// mu is never contended (a one-shot registration hands the connection
	// to one worker at a time); holding it across serve gives each worker
	// a happens-before edge to the previous one, which epoll itself does
	// not give in Go's memory model.
	mu       sync.Mutex
	draining bool
	done     atomic.Bool
	id       uint64
	p        *poller
	c        net.Conn
	rc       syscall.RawConn
	sess     *actors.Session
	parser   frameParser
}

// worker reads ready connections. Its callbacks for the raw descriptor are
// bound once, so reading and re-arming allocate nothing per connection.
type worker struct {
	p      *poller
	buf    []byte
	n      int
	err    error
	readFn func(fd uintptr) bool
	arm    armer
}

// armer registers or re-arms one connection in epoll.
type armer struct {
	epfd int
	op   int
	id   uint64
	err  error
	fn   func(fd uintptr)
}

func (a *armer) call(fd uintptr) {
	ev := unix.EpollEvent{Events: pollEvents, Fd: int32(uint32(a.id)), Pad: int32(uint32(a.id >> 32))}
	a.err = unix.EpollCtl(a.epfd, a.op, int(fd), &ev)
}

// ctl runs under the runtime's reference on the descriptor, so a
// descriptor closed and reused by another connection is never touched.
func (a *armer) ctl(pc *pconn, op int) error {
	a.op, a.id = op, pc.id
	if err := pc.rc.Control(a.fn); err != nil {
		return err
	}
	return a.err
}

func newArmer(epfd int) *armer {
	a := &armer{epfd: epfd}
	a.fn = a.call
	return a
}

func newPoller() (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: -1, Pad: -1} // an id no connection gets
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(wake)
		return nil, fmt.Errorf("epoll_ctl eventfd: %w", err)
	}
	p := &poller{epfd: epfd, wake: wake, work: make(chan *pconn, 1024), conns: make(map[uint64]*pconn), next: 1}
	workers := max(4, 2*runtime.GOMAXPROCS(0))
	p.wg.Add(1 + workers)
	go p.wait()
	for range workers {
		go p.worker()
	}
	return p, nil
}

// add hands an upgraded connection to the poller. pending holds bytes read
// during the handshake. After add, the poller owns reading c.
func (p *poller) add(sock *socket, pending []byte, sess *actors.Session, maxMessage int) error {
	c := sock.c
	sc, ok := c.(syscall.Conn)
	if !ok {
		return errors.New("connection has no file descriptor")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return fmt.Errorf("raw connection: %w", err)
	}
	pc := &pconn{p: p, c: c, rc: rc, sess: sess, parser: frameParser{sess: sess, max: maxMessage}}
	p.mu.Lock()
	pc.id = p.next
	p.next++
	p.conns[pc.id] = pc
	p.mu.Unlock()
	sock.reader.Store(pc)
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if len(pending) > 0 && pc.parser.feed(pending, time.Now()) {
		pc.draining = true
	}
	if err := newArmer(p.epfd).ctl(pc, unix.EPOLL_CTL_ADD); err != nil {
		pc.finish()
		return err
	}
	return nil
}

func (p *poller) wait() {
	defer p.wg.Done()
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(p.epfd, events, -1)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		for i := range n {
			ev := &events[i]
			if ev.Fd == -1 && ev.Pad == -1 {
				close(p.work)
				return
			}
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			p.mu.Lock()
			pc := p.conns[id]
			p.mu.Unlock()
			if pc != nil {
				p.work <- pc
			}
		}
	}
}

func (p *poller) worker() {
	defer p.wg.Done()
	w := &worker{p: p, buf: make([]byte, pollReadBuffer), arm: armer{epfd: p.epfd}}
	w.readFn = w.read
	w.arm.fn = w.arm.call
	for pc := range p.work {
		w.serve(pc)
	}
}

// close stops the poller's goroutines. Connections still registered are
// not touched: their sockets are closed by their owners.
func (p *poller) close() {
	var one = [8]byte{1}
	_, _ = unix.Write(p.wake, one[:])
	p.wg.Wait()
	unix.Close(p.wake)
	unix.Close(p.epfd)
}

// serve reads what the socket holds, feeds it to the parser, and re-arms.
func (w *worker) serve(pc *pconn) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.done.Load() {
		return
	}
	now := time.Now()
	for {
		err := pc.rc.Read(w.readFn)
		n, rerr := w.n, w.err
		if err != nil {
			pc.finish() // closed, or past the deadline the writer set while closing
			return
		}
		if n > 0 && !pc.draining && pc.parser.feed(w.buf[:n], now) {
			pc.draining = true
		}
		switch {
		case errors.Is(rerr, unix.EAGAIN):
		case rerr != nil || n == 0:
			pc.finish() // the peer closed or the connection failed
			return
		case n == len(w.buf):
			continue // there may be more right now
		}
		break
	}
	if err := w.arm.ctl(pc, unix.EPOLL_CTL_MOD); err != nil {
		pc.finish()
	}
}

func (w *worker) read(fd uintptr) bool {
	w.n, w.err = unix.Read(int(fd), w.buf)
	if w.n < 0 {
		w.n = 0
	}
	return true // never park: readiness comes from epoll
}

// expire ends a lingering close whose peer neither answered nor closed.
func (pc *pconn) expire() {
	_ = pc.c.Close()
	pc.finish()
}

// finish ends reading once: the session learns the reader has stopped.
func (pc *pconn) finish() {
	if !pc.done.CompareAndSwap(false, true) {
		return
	}
	pc.p.mu.Lock()
	delete(pc.p.conns, pc.id)
	pc.p.mu.Unlock()
	pc.sess.Done()
}
