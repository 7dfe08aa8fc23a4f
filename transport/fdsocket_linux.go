//go:build linux

package transport

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// detach makes an upgraded connection a socket that holds its descriptor
// alone, for the epoll reader: a duplicate of c's descriptor is kept and c
// is closed, which takes it out of Go's network poller. It returns nil when
// the descriptor cannot be duplicated (the process is out of descriptors),
// and the connection is then kept as it is.
func detach(c net.Conn, writeTimeout, closeGrace time.Duration) *socket {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	fd, derr := -1, error(nil)
	if err := rc.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil || derr != nil {
		return nil
	}
	_ = c.Close() // the duplicate keeps the connection; it is already non-blocking
	return &socket{fd: fd, writeTimeout: writeTimeout, closeGrace: closeGrace}
}

func closeFD(fd int) error {
	if err := unix.Close(fd); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	return nil
}

// waitOut asks the epoll reader to report when the descriptor takes bytes
// again, under a timer for the deadline.
func (s *socket) waitOut(d time.Duration, ready func(error)) {
	w := &outWait{ready: ready}
	s.out.Store(w)
	w.mu.Lock()
	w.timer = time.AfterFunc(d, func() { s.endWait(w, os.ErrDeadlineExceeded) })
	w.mu.Unlock()
	if pc := s.reader.Load(); pc != nil && pc.registered.Load() {
		pc.watchOut(true)
	} // else add arms it once registered
	if s.refs.Load()&fdClosed != 0 {
		s.endWait(w, net.ErrClosed) // Close may have looked for a Wait before this one was stored
	}
}

// writable ends a Wait: the reader saw the descriptor take bytes.
func (s *socket) writable() {
	if w := s.out.Load(); w != nil {
		s.endWait(w, nil)
	}
}

// watchOut turns the reports of a writable descriptor on or off.
func (pc *pconn) watchOut(on bool) {
	s := pc.sock
	if !s.use() {
		return
	}
	ev := unix.EpollEvent{Events: pollEvents}
	if on {
		ev.Events |= unix.EPOLLOUT
	}
	setSlot(&ev, pc)
	_ = unix.EpollCtl(pc.r.epfd, unix.EPOLL_CTL_MOD, s.fd, &ev)
	s.unuse()
}

func (s *socket) shutWrite() {
	if s.use() {
		_ = unix.Shutdown(s.fd, unix.SHUT_WR)
		s.unuse()
	}
}

// peerName is the peer's address, asked of the kernel.
func (s *socket) peerName() string {
	if !s.use() {
		return ""
	}
	sa, err := unix.Getpeername(s.fd)
	s.unuse()
	if err != nil {
		return ""
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)).String()
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port)).String()
	}
	return ""
}
