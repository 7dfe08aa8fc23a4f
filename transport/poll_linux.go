//go:build linux

package transport

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/livestore-relay/livestore-relay/actors"
)

const (
	pollReadBuffer = 64 << 10 // one per reactor, not per connection
	// Edge-triggered: an event comes when new bytes arrive, so a read that
	// returns less than the buffer has drained the socket and nothing has
	// to be re-armed after a read.
	pollEvents = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET
)

// poller reads every upgraded connection without a goroutine per
// connection. It runs one reactor per processor: a goroutine with an epoll
// instance of its own, which reads the ready sockets itself, so a frame
// goes from the kernel to the room without a hand-off between goroutines.
// The epoll descriptor is itself registered with Go's network poller, so a
// reactor with nothing to do is parked by the runtime like any network
// goroutine instead of blocking a thread in epoll_wait. A connection
// belongs to one reactor for its whole life, which makes that reactor its
// only reader.
type poller struct {
	reactors []*reactor
	next     atomic.Uint64 // connection ids; also spreads them over reactors
	wg       sync.WaitGroup
}

// reactor is one epoll loop. Its fields are its goroutine's (loop), except
// slots and free, which the handshake goroutines (add) and any goroutine
// closing a socket (finish) change too.
type reactor struct {
	epfd int
	file *os.File        // epfd, as Go's poller knows it
	ep   syscall.RawConn // waits on file
	// mu guards slots and free: the reactor looks connections up by the
	// slot in an event, add registers them from a handshake goroutine, and
	// finish removes them from whichever goroutine closed the socket (the
	// connection actor, a room aborting, a close-grace timer). An event
	// carries its connection's slot and the low half of its id, so an event
	// read before the connection left (its slot perhaps reused since) is
	// recognized as stale. A slice rather than a map: no hashing, and
	// 8 bytes per connection.
	mu    sync.Mutex
	slots []*pconn
	free  []uint32 // empty slots
	buf   []byte
	// Callbacks for the epoll descriptor, bound once, and their results.
	waitFn func(fd uintptr) bool
	pollFn func(fd uintptr)
	events []unix.EpollEvent
	ready  int
	wErr   error
	// Sockets to read again next round, and the other half of that list.
	again, spare []*pconn
	// round has each connection written once per round: what the round's
	// reads queue for a socket is written when the round ends.
	round actors.Round
	log   zerolog.Logger
}

// pconn is one connection in the poller. Apart from done, its fields are
// the reactor's, or the handshake goroutine's before registration.
type pconn struct {
	done       atomic.Bool
	registered atomic.Bool // in the epoll set: a Wait may turn writable reports on
	hup        bool        // the peer shut its side: read on to the end
	draining   bool
	queued     bool // in the reactor's list for this round or the next
	id         uint64
	slot       uint32
	r          *reactor
	sock       *socket // its descriptor, shared with the writes
	sess       *actors.Session
	parser     frameParser
}

func newPoller(log zerolog.Logger) (*poller, error) {
	p := &poller{}
	for range max(1, runtime.GOMAXPROCS(0)) {
		r, err := newReactor(log)
		if err != nil {
			p.close()
			return nil, err
		}
		p.reactors = append(p.reactors, r)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			r.loop()
		}()
	}
	return p, nil
}

func newReactor(log zerolog.Logger) (*reactor, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("epoll non-blocking: %w", err)
	}
	r := &reactor{epfd: epfd, file: os.NewFile(uintptr(epfd), "epoll"),
		buf: make([]byte, pollReadBuffer), events: make([]unix.EpollEvent, 256), log: log}
	if r.ep, err = r.file.SyscallConn(); err != nil {
		r.file.Close()
		return nil, fmt.Errorf("epoll raw descriptor: %w", err)
	}
	r.waitFn = r.wait
	r.pollFn = func(fd uintptr) { r.wait(fd) }
	return r, nil
}

func setSlot(ev *unix.EpollEvent, pc *pconn) {
	ev.Fd, ev.Pad = int32(pc.slot), int32(uint32(pc.id))
}

// lookup is the connection an event is for, nil when it has left.
func (r *reactor) lookup(ev *unix.EpollEvent) *pconn {
	slot := uint32(ev.Fd)
	r.mu.Lock()
	var pc *pconn
	if int(slot) < len(r.slots) {
		pc = r.slots[slot]
	}
	r.mu.Unlock()
	if pc == nil || uint32(pc.id) != uint32(ev.Pad) {
		return nil
	}
	return pc
}

// register gives pc a slot.
func (r *reactor) register(pc *pconn) {
	r.mu.Lock()
	if n := len(r.free); n > 0 {
		pc.slot = r.free[n-1]
		r.free = r.free[:n-1]
		r.slots[pc.slot] = pc
	} else {
		pc.slot = uint32(len(r.slots))
		r.slots = append(r.slots, pc)
	}
	r.mu.Unlock()
}

// unregister frees pc's slot.
func (r *reactor) unregister(pc *pconn) {
	r.mu.Lock()
	r.slots[pc.slot] = nil
	r.free = append(r.free, pc.slot)
	r.mu.Unlock()
}

// add hands an upgraded connection to the poller. pending holds bytes read
// during the handshake. After add, the poller owns reading the socket.
func (p *poller) add(sock *socket, pending []byte, sess *actors.Session, maxMessage int) error {
	if sock.fd < 0 {
		return errors.New("connection has no file descriptor")
	}
	id := p.next.Add(1)
	r := p.reactors[id%uint64(len(p.reactors))]
	pc := &pconn{id: id, r: r, sock: sock, sess: sess, parser: frameParser{sess: sess, max: maxMessage}}
	sess.SetRound(&r.round)
	if len(pending) > 0 {
		if reason := pc.parser.feed(pending, time.Now()); reason != 0 {
			pc.draining = true
			fail(sess, reason)
		}
	}
	r.register(pc)
	sock.reader.Store(pc)
	// Registering an edge-triggered descriptor that is already readable
	// reports it at once, so bytes that came before this are not missed.
	// Under use, a descriptor closed meanwhile (and perhaps reused) is
	// never touched.
	if !sock.use() {
		pc.finish()
		return errors.New("closed before it was watched")
	}
	ev := unix.EpollEvent{Events: pollEvents}
	setSlot(&ev, pc)
	err := unix.EpollCtl(r.epfd, unix.EPOLL_CTL_ADD, sock.fd, &ev)
	sock.unuse()
	if err != nil {
		pc.finish()
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	pc.registered.Store(true)
	if sock.c == nil && sock.out.Load() != nil {
		pc.watchOut(true) // a Wait came before the registration
	}
	return nil
}

// loop serves the reactor's sockets in rounds. A round reads each ready
// socket once, at most one buffer, so a client that keeps its socket full
// gets its turn like any other instead of holding the reactor. A socket
// that may hold more bytes is served again next round: with edge
// triggering no new event would come for them. While such sockets wait,
// the reactor polls epoll without parking.
func (r *reactor) loop() {
	for {
		var err error
		if len(r.again) == 0 {
			err = r.ep.Read(r.waitFn) // parks until a socket is ready
		} else {
			err = r.ep.Control(r.pollFn)
		}
		if err != nil {
			return // closed
		}
		if r.wErr != nil {
			// Only a broken epoll descriptor fails epoll_wait (EINTR is
			// retried): nothing this reactor reads can be served any more.
			r.log.Error().Err(r.wErr).Msg("epoll_wait failed; reactor stopped")
			return
		}
		run := r.again
		for i := range r.ready {
			ev := &r.events[i]
			pc := r.lookup(ev)
			if pc == nil {
				continue
			}
			if ev.Events&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 && pc.sock.c == nil {
				pc.sock.writable() // a writer waits for this, or a failed write will tell
				if ev.Events&^unix.EPOLLOUT == 0 {
					continue // nothing to read
				}
			}
			if ev.Events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
				pc.hup = true
			}
			if !pc.queued {
				pc.queued = true
				run = append(run, pc)
			}
		}
		r.again = r.spare[:0]
		now := time.Now()
		r.round.Begin()
		for i, pc := range run {
			run[i] = nil
			if r.serve(pc, now) {
				r.again = append(r.again, pc)
			} else {
				pc.queued = false
			}
		}
		r.spare = run[:0]
		r.round.End()
	}
}

// wait collects ready events without blocking; when there are none, the
// runtime parks the reactor until the epoll descriptor becomes readable.
func (r *reactor) wait(fd uintptr) bool {
	for {
		r.ready, r.wErr = nbEpollWait(int(fd), r.events)
		if !errors.Is(r.wErr, unix.EINTR) {
			break
		}
	}
	if r.wErr != nil || r.ready < 0 {
		r.ready = 0
		return true // stop waiting: the loop looks at wErr
	}
	return r.ready > 0
}

// serve reads a socket once, at most one buffer, and reports whether it may
// hold more bytes. A short read means, with edge triggering, that the
// socket is drained for now. The end of the stream raises no new edge once
// reported, so after a hang-up it is read until it shows.
func (r *reactor) serve(pc *pconn, now time.Time) bool {
	if pc.done.Load() {
		return false
	}
	if !pc.sock.use() {
		pc.finish() // closed
		return false
	}
	n, rerr := r.read(pc.sock.fd)
	pc.sock.unuse()
	if n > 0 && !pc.draining {
		if reason := pc.parser.feed(r.buf[:n], now); reason != 0 {
			pc.draining = true
			fail(pc.sess, reason)
		}
	}
	switch {
	case errors.Is(rerr, unix.EAGAIN):
		return false
	case rerr != nil || n == 0:
		pc.finish() // the peer closed or the connection failed
		return false
	}
	return n == len(r.buf) || pc.hup
}

func (r *reactor) read(fd int) (int, error) {
	for {
		n, err := nbRead(fd, r.buf)
		if !errors.Is(err, unix.EINTR) {
			return max(n, 0), err
		}
	}
}

// close stops the reactors. Connections still registered are not touched:
// their sockets are closed by their owners.
func (p *poller) close() {
	for _, r := range p.reactors {
		_ = r.file.Close() // ends the reactor's wait
	}
	p.wg.Wait()
}

// expire ends a lingering close whose peer neither answered nor closed.
// It runs on the close-grace timer's goroutine (socket.Shut) and
// touches only what is safe from any goroutine: the descriptor and finish.
func (pc *pconn) expire() {
	_ = pc.sock.Close()
}

// finish ends reading once: the session learns the reader has stopped.
// Closing the descriptor has removed it from epoll. Safe from any
// goroutine: done decides which call does the work.
func (pc *pconn) finish() {
	if !pc.done.CompareAndSwap(false, true) {
		return
	}
	pc.r.unregister(pc)
	pc.sess.Done()
}
