package transport

import (
	"net"
	"sync/atomic"
	"time"

	"github.com/livestore-relay/livestore-relay/transport/wsframe"
)

// socket is the write side of an upgraded connection, as the connection
// actor uses it (actors.Socket says who calls what). Only that actor
// writes; Close may come from any goroutine.
type socket struct {
	c            net.Conn
	writeTimeout time.Duration
	closeGrace   time.Duration
	iov          net.Buffers // reused between writes
	// reader is the connection's place in the epoll reader, nil with the
	// goroutine reader (whose blocked Read ends by itself on Close or at
	// the read deadline).
	reader atomic.Pointer[pconn]
}

func (s *socket) WriteFrames(frames [][]byte) error {
	if err := s.c.SetWriteDeadline(time.Now().Add(s.writeTimeout)); err != nil {
		return err
	}
	if len(frames) == 1 {
		_, err := s.c.Write(frames[0])
		return err
	}
	// WriteTo consumes the Buffers value it is given; hand it a copy of the
	// slice header so frames keeps its elements for the caller to clear.
	s.iov = frames
	_, err := s.iov.WriteTo(s.c)
	s.iov = nil
	return err
}

func (s *socket) WriteClose(code uint16, reason string) error {
	now := time.Now()
	if err := s.c.SetWriteDeadline(now.Add(min(s.writeTimeout, time.Second+s.closeGrace))); err != nil {
		return err
	}
	if _, err := s.c.Write(wsframe.Close(code, reason)); err != nil {
		return err
	}
	// Half-close so the peer reads the close frame and then the end of the
	// stream, while the reader keeps reading until the peer closes its side.
	if tc, ok := s.c.(interface{ CloseWrite() error }); ok {
		_ = tc.CloseWrite()
	}
	if pc := s.reader.Load(); pc != nil {
		// The epoll reader has no read deadline to end a lingering close:
		// the timer's goroutine does, through what is safe from anywhere.
		time.AfterFunc(s.closeGrace, pc.expire)
	}
	return s.c.SetReadDeadline(now.Add(s.closeGrace))
}

func (s *socket) Close() error {
	err := s.c.Close()
	if pc := s.reader.Load(); pc != nil {
		pc.finish() // no readiness event will come for a closed descriptor
	}
	return err
}

func (s *socket) RemoteAddr() string { return s.c.RemoteAddr().String() }
