//go:build !linux

package transport

import (
	"errors"
	"net"
	"time"

	"github.com/rs/zerolog"

	"github.com/livestore-relay/livestore-relay/actors"
)

// The epoll reader exists on Linux only; elsewhere these stand in for it so
// that the goroutine reader is the one that runs.
type poller struct{}

type pconn struct{}

var errNoEpoll = errors.New("the epoll reader needs Linux; use the goroutine reader")

func newPoller(zerolog.Logger) (*poller, error) { return nil, errNoEpoll }

func (p *poller) add(*socket, []byte, *actors.Session, int) error { return errNoEpoll }

func (p *poller) close() {}

func (pc *pconn) finish() {}

func (pc *pconn) expire() {}

// Sockets keep their net.Conn where there is no epoll reader: these are
// never reached.

func detach(net.Conn, time.Duration, time.Duration) *socket { return nil }

func closeFD(int) error { return errNoEpoll }

func (s *socket) waitOut(_ time.Duration, ready func(error)) { go ready(errNoEpoll) }

func (s *socket) shutWrite() {}

func (s *socket) peerName() string { return "" }

func (pc *pconn) watchOut(bool) {}
