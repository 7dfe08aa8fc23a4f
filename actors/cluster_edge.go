package actors

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/livestore-relay/livestore-relay/actors/clusterpb"
)

// edge stands in for a user's room on a node that does not own the user.
// It owns the user's local connections: it forwards what they read to the
// owner, queues on them what the owner delivers, and does for them what a
// room does for its own (pings, liveness, token expiry, drain).
//
// Order: a connection's messages reach the edge in the order they were
// read, the edge sends them to the owner's endpoint in that order, and
// remoting keeps the order of messages between two actors.
type edge struct {
	sys   *System
	user  string
	owner string     // the node that owns the user's room
	to    *actor.PID // its endpoint
	conns map[uint64]*conn
}

func newEdge(sys *System, user, owner string) *edge {
	return &edge{sys: sys, user: user, owner: owner, to: endpointPID(owner), conns: make(map[uint64]*conn)}
}

func (e *edge) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *inbound:
		if e.conns[m.c.id] != nil && m.c.reason.Load() == 0 {
			e.forward(ctx, m)
		}
	case *clusterpb.Deliver:
		ctx.Respond(&clusterpb.Delivered{Ok: e.deliver(ctx, m)})
	case *clusterpb.CloseConn:
		if c := e.conns[m.Conn]; c != nil {
			c.close(edgeReason(CloseReason(m.Reason)))
		}
	case peerClose:
		// The owner decides the close once it has answered everything read
		// before it: its CloseConn comes behind those answers.
		ctx.Send(e.to, &clusterpb.PeerClose{User: e.user, Node: e.sys.cl.self, Conn: m.c.id})
	case *join:
		e.conns[m.c.id] = m.c
		e.sys.checkExpiry(ctx, m.c, e.sys.cfg.Now())
	case *leave:
		if e.conns[m.c.id] == m.c {
			delete(e.conns, m.c.id)
			ctx.Send(e.to, &clusterpb.Detach{User: e.user, Node: e.sys.cl.self, Conn: m.c.id})
		}
	case sweep:
		now := e.sys.cfg.Now()
		for _, c := range e.conns {
			e.sys.sweepConn(ctx, c, now)
		}
	case moveOut:
		for _, c := range e.conns {
			c.close(CloseRehomed)
		}
	case drainAll:
		for _, c := range e.conns {
			c.close(CloseGoingAway)
		}
	case abortAll:
		for _, c := range e.conns {
			_ = c.sock.Close()
		}
	case *actor.Stopping:
		// The directory stops an edge once its last connection is
		// released, and a stop overtakes the leave that came before it:
		// the owner is told here. An edge that failed closes its own.
		for _, c := range e.conns {
			c.close(CloseInternal)
			ctx.Send(e.to, &clusterpb.Detach{User: e.user, Node: e.sys.cl.self, Conn: c.id})
		}
	}
}

// forward sends one message of a local connection to the owner's room.
func (e *edge) forward(ctx actor.Context, m *inbound) {
	out := &clusterpb.Inbound{User: e.user, Node: e.sys.cl.self, Edge: ctx.Self().Id, Conn: m.c.id,
		Type: int32(m.typ), Frame: m.frame, ReadUnixNano: m.read.UnixNano(), Events: int32(m.events),
		LastTs: m.lastTs, RequestId: m.requestID, Target: m.target, HasTarget: m.hasTarget, HasMore: m.hasMore}
	if m.err != nil {
		out.ErrorCode, out.ErrorMessage = int32(m.err.Code), m.err.Message
	}
	if m.bindAs != nil {
		out.Bind, out.ClientId, out.SessionId = true, m.bindAs.clientID, m.bindAs.sessionID
	}
	if st := m.store; st != nil {
		out.Store = &clusterpb.StoreIn{Id: st.id, HeadEventNumber: st.head.EventNumber, HeadClientId: st.head.ClientID,
			HeadSessionId: st.head.SessionID, FirstParent: st.firstParent}
	}
	cm := &e.sys.cl.m
	cm.framesOut.Inc()
	cm.bytesOut.Add(float64(len(m.frame)))
	ctx.Send(e.to, out)
}

// deliver queues frames from the owner on a local connection, with the
// same bounds as any frame: past them the connection is closed with 4003.
func (e *edge) deliver(ctx actor.Context, m *clusterpb.Deliver) bool {
	c := e.conns[m.Conn]
	if c == nil {
		return false
	}
	cm := &e.sys.cl.m
	cm.framesIn.Add(float64(len(m.Frames)))
	for _, f := range m.Frames {
		cm.bytesIn.Add(float64(len(f)))
		if !c.enqueue(&serverFrame{b: f, kind: outRemote}) {
			return false
		}
	}
	return true
}

// confirmRemoteWait bounds the wait for proxies' writers; each write to an
// edge is itself bounded by DeliverTimeout.
const confirmRemoteWait = 5 * time.Second

// confirmRemote waits until the proxies that got the current push have
// handed it to their nodes, which answer once it sits in the connection's
// send queue there; only then may the push be acked. A proxy whose node
// did not answer has been closed by its writer; one whose writer did not
// answer at all is closed here and leaves routing before the ack.
func (r *room) confirmRemote() {
	done := make(chan *conn, len(r.remote))
	for _, q := range r.remote {
		q.c.post(barrier{c: q.c, done: done})
	}
	timer := time.NewTimer(confirmRemoteWait)
	defer timer.Stop()
	answered := 0
wait:
	for answered < len(r.remote) {
		select {
		case c := <-done:
			answered++
			for i, q := range r.remote {
				if q != nil && q.c == c {
					r.remote[i] = nil
					break
				}
			}
		case <-timer.C:
			break wait
		}
	}
	for _, q := range r.remote {
		if q != nil && q.c.close(CloseRehomed) {
			r.unbind(q) // not known to have it: out of routing before the ack
		}
	}
	clear(r.remote)
	r.remote = r.remote[:0]
}
