package actors

import (
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/livestore-relay/livestore-relay/actors/heads"
	"github.com/livestore-relay/livestore-relay/protocol"
	"github.com/livestore-relay/livestore-relay/transport/wsframe"
)

type (
	join   struct{ c *conn }
	leave  struct{ c *conn }
	expire struct{ req *pullRequest }
	// peerClose follows the last message read before the peer's close
	// frame. A value, not a pointer: it fits an interface without allocating.
	peerClose struct{ c *conn }
)

// peer is a connection in its user's room. Owned by the room.
type peer struct {
	c        *conn
	id       identity
	bound    bool
	requests int      // pending peer_pulls this peer started
	stores   []string // the sequenced stores it joined, in join order
}

// pullRequest is a peer_pull waiting for its targets' responses. Owned by
// the room; its timer's callback only carries it back in an expire message.
type pullRequest struct {
	id      string
	from    *peer
	targets []*peer
	timer   *time.Timer
}

// room is one user's actor. It alone decides where the user's messages go,
// so routing needs no locks: the peer table and the pending peer_pulls are
// its private state.
type room struct {
	sys     *System
	user    string
	self    *actor.PID
	peers   []*peer                   // every connection in the room, in join order
	bound   []*peer                   // relay order: binding order
	pending map[string][]*pullRequest // by requestId; usually one each
	slow    []*peer                   // scratch for one fan-out
	remote  []*peer                   // scratch: proxies that got the current push (cluster.go)
	relayed uint64                    // pushes with events seen; the loss-injection build drops by it
	stores  map[string]*storeRoute    // sequenced stores with a joined peer (store.go)
	op      *heads.Op                 // the room's one request to the head keeper, reused (keeperOp)
}

func newRoom(sys *System, user string) *room {
	return &room{
		sys:  sys,
		user: user,
		// pending and stores are made on their first entry:
		// most rooms never have a pending peer_pull or a sequenced store.
	}
}

func (r *room) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *inbound:
		if h := r.sys.cfg.FaultHook; h != nil {
			h("room", r.user)
		}
		r.handle(ctx, m)
	case peerClose:
		// Every frame the room queued for the connection is in its mailbox
		// ahead of the closeNow this sends.
		m.c.close(ClosePeer)
	case *join:
		if h := r.sys.cfg.FaultHook; h != nil {
			h("room", r.user)
		}
		p := &peer{c: m.c}
		m.c.peer = p
		r.peers = append(r.peers, p)
		r.checkExpiry(ctx, m.c, r.sys.cfg.Now())
	case sweep:
		r.sweep(ctx)
	case moveOut:
		// The user's room now lives on another node: its heads go there
		// before its connections are told to reconnect.
		r.handover(m.owner)
		for _, p := range r.peers {
			p.c.close(CloseRehomed)
		}
	case *leave:
		if p := m.c.peer; p != nil {
			r.unbind(p)
			m.c.peer = nil
			if i := slices.Index(r.peers, p); i >= 0 {
				r.peers = slices.Delete(r.peers, i, i+1)
			}
		}
	case *expire:
		r.finish(m.req)
	case drainAll:
		if r.sys.cl != nil {
			// The first successor that takes the heads is alive, so it
			// is the next owner once the others have dropped this node.
			for _, next := range r.sys.cl.successors(r.user) {
				if r.handover(next) {
					break
				}
			}
		}
		for _, p := range r.peers {
			p.c.close(CloseGoingAway)
		}
	case abortAll:
		for _, p := range r.peers {
			_ = p.c.sock.Close() // safe from any goroutine; ends the reader
		}
	case *actor.Started:
		r.self = ctx.Self()
	case *actor.Stopping:
		// Stopped with peers still here means the room failed: close them
		// so their clients reconnect into a fresh room.
		for _, p := range r.peers {
			p.c.close(CloseInternal)
		}
		for _, reqs := range r.pending {
			for _, req := range reqs {
				req.timer.Stop()
			}
		}
	}
}

func (r *room) handle(ctx actor.Context, m *inbound) {
	p := m.c.peer
	if p == nil || m.c.reason.Load() != 0 {
		return
	}
	if m.err != nil {
		r.sendError(ctx, p, m, m.err)
		return
	}
	if m.bindAs != nil {
		r.bind(p, *m.bindAs)
	}
	if !p.bound {
		return // replaced by a newer connection since this message was read
	}
	if m.storeID() != "" && (m.typ == protocol.TypePush || m.typ == protocol.TypePull) {
		r.handleStore(ctx, p, m)
		return
	}
	switch m.typ {
	case protocol.TypePush:
		r.push(ctx, p, m)
	case protocol.TypePull:
		r.pull(ctx, p)
	case protocol.TypePeerPull:
		r.peerPull(ctx, p, m)
	case protocol.TypePeerPullResponse:
		r.peerPullResponse(ctx, p, m)
	}
}

func (r *room) bind(p *peer, id identity) {
	// Bound identities are distinct, and a user has few connections
	// (--max-conns-per-user): a scan finds the one to replace without a
	// map per room.
	if i := slices.IndexFunc(r.bound, func(q *peer) bool { return q.id == id }); i >= 0 && r.bound[i] != p {
		old := r.bound[i]
		old.c.close(CloseReplaced)
		r.unbind(old)
	}
	p.id, p.bound = id, true
	r.bound = append(r.bound, p)
}

// unbind takes p out of routing: no more relays to it, its own requests
// end, and it is no longer a target of anyone's.
func (r *room) unbind(p *peer) {
	if !p.bound {
		return
	}
	p.bound = false
	if i := slices.Index(r.bound, p); i >= 0 {
		r.bound = slices.Delete(r.bound, i, i+1)
	}
	r.leaveStores(p)
	var ended []*pullRequest
	for _, reqs := range r.pending {
		for _, req := range reqs {
			if req.from == p {
				ended = append(ended, req)
				continue
			}
			if i := slices.Index(req.targets, p); i >= 0 {
				req.targets = slices.Delete(req.targets, i, i+1)
				if len(req.targets) == 0 {
					ended = append(ended, req)
				}
			}
		}
	}
	for _, req := range ended {
		r.finish(req)
	}
}

// sweep pings connections quiet for a ping interval, closes those silent
// for two, and has a timer armed for each token that expires before the
// next sweep.
func (r *room) sweep(ctx actor.Context) {
	now := r.sys.cfg.Now()
	for _, p := range r.peers {
		if !p.c.proxy { // a proxy's own node watches it
			r.sys.sweepConn(ctx, p.c, now)
		}
	}
}

// sweepConn is one connection's part of a sweep.
func (s *System) sweepConn(ctx actor.Context, c *conn, now time.Time) {
	if c.reason.Load() != 0 {
		return
	}
	interval := int64(s.cfg.PingInterval)
	quiet := now.UnixNano() - c.lastRead.Load()
	switch {
	case quiet > 2*interval:
		c.close(CloseLiveness)
		return
	case quiet >= interval:
		c.enqueue(&ctrlFrame{b: wsframe.Ping()})
	}
	s.checkExpiry(ctx, c, now)
}

func (r *room) checkExpiry(ctx actor.Context, c *conn, now time.Time) { r.sys.checkExpiry(ctx, c, now) }

func (s *System) checkExpiry(ctx actor.Context, c *conn, now time.Time) {
	if c.expires != 0 && time.Duration(c.expires-now.UnixNano()) <= s.sweepEvery() {
		ctx.Send(c.pid, armExpiry{})
	}
}

// deliver queues msg for p; a peer that cannot take it is closed as a slow
// consumer and leaves routing after the current fan-out.
func (r *room) deliver(ctx actor.Context, p *peer, msg any) bool {
	if p.c.enqueue(msg) {
		return true
	}
	r.slow = append(r.slow, p)
	return false
}

func (r *room) dropSlow() {
	for _, p := range r.slow {
		r.unbind(p)
	}
	clear(r.slow)
	r.slow = r.slow[:0]
}

// sendError answers m with e. The error names m (payload.replyTo) as far as
// it is known, so that a client can tell which message it answers.
func (r *room) sendError(ctx actor.Context, p *peer, m *inbound, e *protocol.Error) {
	r.sendStoreError(ctx, p, m, e, nil)
}

func (r *room) push(ctx actor.Context, p *peer, m *inbound) {
	if m.events > 0 {
		r.relayed++
		for _, q := range r.bound {
			if q != p && !r.dropRelay() && r.deliver(ctx, q, m) && q.c.proxy {
				r.remote = append(r.remote, q)
			}
		}
		if len(r.remote) > 0 {
			r.confirmRemote()
		}
	}
	r.deliver(ctx, p, m) // every recipient has it queued: ack
	r.dropSlow()
	r.sys.metrics.RelayLatency.Observe(time.Since(m.read).Seconds())
}

func (r *room) pull(ctx actor.Context, p *peer) {
	peers := otherClients(r.bound, p)
	_, f := wsframe.AppendText(make([]byte, 0, 160+len(peers)*32), func(b []byte) []byte {
		return protocol.AppendPullResponse(b, r.sys.now(), peers)
	})
	r.deliver(ctx, p, &serverFrame{b: f, kind: outPullResponse})
	r.dropSlow()
}

// otherClients returns the sorted, distinct clientIds of the open peers in
// among, p's own clientId excluded.
func otherClients(among []*peer, p *peer) []string {
	peers := make([]string, 0, len(among))
	for _, q := range among {
		if q.id.clientID != p.id.clientID && q.c.reason.Load() == 0 {
			peers = append(peers, q.id.clientID)
		}
	}
	slices.Sort(peers)
	return slices.Compact(peers)
}

func (r *room) findPending(id string, match func(*pullRequest) bool) *pullRequest {
	for _, req := range r.pending[id] {
		if match(req) {
			return req
		}
	}
	return nil
}

func (r *room) peerPull(ctx actor.Context, p *peer, m *inbound) {
	candidates := r.bound
	if m.storeID() != "" {
		// Only the store's joined peers can answer for it.
		route := r.joined(p, m.storeID())
		if route == nil {
			r.sendError(ctx, p, m, errNotJoined)
			return
		}
		candidates = route.peers
	}
	if r.findPending(m.requestID, func(req *pullRequest) bool { return req.from == p }) != nil {
		r.sendError(ctx, p, m, errDuplicateReq)
		return
	}
	var targets []*peer
	for _, q := range candidates {
		if q == p || q.c.reason.Load() != 0 {
			continue
		}
		if m.hasTarget && q.id.clientID == m.target || !m.hasTarget && q.id.clientID != p.id.clientID {
			targets = append(targets, q)
		}
	}
	if len(targets) > 0 && p.requests >= r.sys.cfg.MaxPendingPeerPulls {
		r.sendError(ctx, p, m, errTooManyPulls)
		return
	}
	accepted := targets[:0]
	for _, q := range targets {
		if r.deliver(ctx, q, m) {
			accepted = append(accepted, q)
		}
	}
	r.dropSlow()
	if len(accepted) == 0 {
		// Nobody can answer: the server does, and nothing stays pending.
		if m.storeID() != "" {
			r.answerStorePeerPull(ctx, p, m)
			return
		}
		_, f := wsframe.AppendText(make([]byte, 0, 160+len(m.requestID)), func(b []byte) []byte {
			return protocol.AppendServerPeerPullResponse(b, r.sys.now(), []byte(m.requestID))
		})
		r.deliver(ctx, p, &serverFrame{b: f, kind: outPeerPullResponse})
		r.dropSlow()
		return
	}
	req := &pullRequest{id: m.requestID, from: p, targets: accepted}
	self := r.self
	// The callback runs on the timer's own goroutine: it must not touch the
	// room's state (req included), only send the room a message carrying
	// req. The room then checks whether req is still pending (finish is
	// idempotent), so a timer that fires as it is stopped does no harm.
	req.timer = time.AfterFunc(r.sys.cfg.PeerPullTimeout, func() { r.sys.root.Send(self, &expire{req: req}) })
	p.requests++
	if r.pending == nil {
		r.pending = make(map[string][]*pullRequest)
	}
	r.pending[req.id] = append(r.pending[req.id], req)
}

func (r *room) peerPullResponse(ctx actor.Context, p *peer, m *inbound) {
	req := r.findPending(m.requestID, func(req *pullRequest) bool { return slices.Contains(req.targets, p) })
	if req == nil {
		r.sys.metrics.droppedUnknown.Inc()
		r.sendError(ctx, p, m, errUnknownRequest)
		return
	}
	if req.from.c.reason.Load() != 0 || !r.deliver(ctx, req.from, m) {
		// The requester is leaving: nobody will read the response.
		r.finish(req)
		r.dropSlow()
		r.sys.metrics.droppedUnknown.Inc()
		r.sendError(ctx, p, m, errUnknownRequest)
		return
	}
	if !m.hasMore {
		if i := slices.Index(req.targets, p); i >= 0 {
			req.targets = slices.Delete(req.targets, i, i+1)
		}
		if len(req.targets) == 0 {
			r.finish(req)
		}
	}
	r.dropSlow()
}

// finish ends a pending request, whatever the cause. It is idempotent.
func (r *room) finish(req *pullRequest) {
	reqs := r.pending[req.id]
	i := slices.Index(reqs, req)
	if i < 0 {
		return
	}
	req.timer.Stop()
	req.from.requests--
	if len(reqs) == 1 {
		delete(r.pending, req.id)
	} else {
		r.pending[req.id] = slices.Delete(reqs, i, i+1)
	}
}
