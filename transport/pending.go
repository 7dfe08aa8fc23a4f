package transport

import (
	"container/list"
	"net"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// pendingHandshakes holds the connections that have not finished their
// handshake, oldest first, under a bound of their own: each holds a file
// descriptor and a buffer while it sends nothing useful. At the bound the
// oldest is shed to make room, so a flood of silent connections keeps
// recycling its own slots while a real client, which finishes its
// handshake at once, gets through. Its methods are safe for concurrent use.
type pendingHandshakes struct {
	mu    sync.Mutex
	max   int
	conns list.List // of net.Conn, oldest at the front
	gauge prometheus.Gauge
	shed  prometheus.Counter
}

// add registers a newly accepted connection, shedding the oldest one at the
// bound. The element it returns is given back to done.
func (p *pendingHandshakes) add(c net.Conn) *list.Element {
	p.mu.Lock()
	var old net.Conn
	if p.conns.Len() >= p.max {
		old = p.conns.Remove(p.conns.Front()).(net.Conn)
	}
	e := p.conns.PushBack(c)
	p.gauge.Set(float64(p.conns.Len()))
	p.mu.Unlock()
	if old != nil {
		p.shed.Inc()
		_ = old.Close() // its handshake fails and ends by itself
	}
	return e
}

// shedOldest closes the oldest unfinished handshake, if there is one, to
// free its file descriptor.
func (p *pendingHandshakes) shedOldest() bool {
	p.mu.Lock()
	front := p.conns.Front()
	if front == nil {
		p.mu.Unlock()
		return false
	}
	old := p.conns.Remove(front).(net.Conn)
	p.gauge.Set(float64(p.conns.Len()))
	p.mu.Unlock()
	p.shed.Inc()
	_ = old.Close()
	return true
}

// done ends a connection's handshake; calling it again is harmless.
func (p *pendingHandshakes) done(e *list.Element) {
	p.mu.Lock()
	p.conns.Remove(e) // a no-op once removed
	p.gauge.Set(float64(p.conns.Len()))
	p.mu.Unlock()
}
