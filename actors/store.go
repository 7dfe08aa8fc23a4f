package actors

import (
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/livestore-relay/livestore-relay/actors/heads"
	"github.com/livestore-relay/livestore-relay/protocol"
	"github.com/livestore-relay/livestore-relay/transport/wsframe"
)

// Sequenced stores.
//
// A store's head lives in the head keeper (package heads), not in the room:
// it must outlive the room, and the keeper's single goroutine makes each
// change a compare-and-set in arrival order. The room keeps only who has
// joined which store, which ends with the connections anyway.
//
// Ordering: the room asks the keeper and waits for the answer before it
// handles its next message. Acks and errors therefore answer each
// connection's messages in order, and a push is forwarded only after its
// head is accepted (and, with a state directory, committed), so no peer
// sees an event whose head could still be lost. Waiting holds up only this
// user's room; the keeper batches the requests of all rooms that wait at
// the same time into one commit.

var (
	errNotJoined  = &protocol.Error{Code: protocol.CodeInvalidMessage, Message: "storeId names a store this connection has not joined; send pull with storeId and head first"}
	errConflict   = &protocol.Error{Code: protocol.CodeStoreConflict, Message: "the announced head forks from the relay's head of this store"}
	errMismatch   = &protocol.Error{Code: protocol.CodeHeadMismatch, Message: "the first event's parentEventNumber is not the store's head"}
	errStoreLimit = &protocol.Error{Code: protocol.CodeLimitExceeded, Message: "this user already has the most stores allowed"}
	errHeadsDown  = &protocol.Error{Code: protocol.CodeInternalError, Message: "the store's head could not be saved; retry"}
)

// storeRoute is one sequenced store as the room routes it: the peers
// joined to it, in join order. Owned by the room.
type storeRoute struct {
	peers []*peer
}

// handleStore handles a push or pull that names a store.
func (r *room) handleStore(ctx actor.Context, p *peer, m *inbound) {
	if m.typ == protocol.TypePull {
		r.joinStore(ctx, p, m)
		return
	}
	r.storePush(ctx, p, m)
}

// joined returns the route of a store p has joined, or nil.
func (r *room) joined(p *peer, store string) *storeRoute {
	if !slices.Contains(p.stores, store) {
		return nil
	}
	return r.stores[store]
}

// keeperOp is the room's one keeper request, made on first use: most
// rooms never have a sequenced store.
func (r *room) keeperOp() *heads.Op {
	if r.op == nil {
		r.op = &heads.Op{}
	}
	return r.op
}

// ask hands the room's one keeper request over and waits for the answer.
func (r *room) ask(kind heads.Kind, store string) *heads.Op {
	op := r.keeperOp()
	op.Kind, op.User, op.Store = kind, r.user, store
	r.sys.heads.Do(op)
	return op
}

func (r *room) joinStore(ctx actor.Context, p *peer, m *inbound) {
	r.keeperOp().Announced = m.store.head
	op := r.ask(heads.Join, m.storeID())
	sm := &r.sys.metrics.store
	switch op.Result {
	case heads.Conflict:
		sm.conflicts.Inc()
		r.leaveStore(p, m.storeID())
		r.sys.log.Warn().Str("user", r.user).Str("clientId", p.id.clientID).Int64("eventNumber", op.Head.EventNumber).
			Msg("store head conflict: a device announced another event at the relay's head")
		head := op.Head
		r.sendStoreError(ctx, p, m, errConflict, &head)
		return
	case heads.LimitExceeded:
		r.sendError(ctx, p, m, errStoreLimit)
		return
	case heads.Failed:
		r.sendError(ctx, p, m, errHeadsDown)
		return
	case heads.Adopted:
		sm.adopted.Inc()
		r.sys.log.Info().Str("user", r.user).Int64("eventNumber", op.Head.EventNumber).
			Msg("store head adopted from a joining device: the relay's head was behind")
	}
	route := r.stores[m.storeID()]
	if route == nil {
		route = &storeRoute{}
		if r.stores == nil {
			r.stores = make(map[string]*storeRoute)
		}
		r.stores[m.storeID()] = route
	}
	if !slices.Contains(p.stores, m.storeID()) {
		p.stores = append(p.stores, m.storeID())
		route.peers = append(route.peers, p)
	}
	online, storePeers := otherClients(r.bound, p), otherClients(route.peers, p)
	head := op.Head
	_, f := wsframe.AppendText(make([]byte, 0, 256+len(m.storeID())+len(head.ClientID)+len(head.SessionID)+(len(online)+len(storePeers))*32),
		func(b []byte) []byte {
			return protocol.AppendStorePullResponse(b, r.sys.now(), online, m.storeID(), head, storePeers)
		})
	r.deliver(ctx, p, &serverFrame{b: f, kind: outPullResponse})
	r.dropSlow()
}

// leaveStore takes p out of one store's routing.
func (r *room) leaveStore(p *peer, store string) {
	i := slices.Index(p.stores, store)
	if i < 0 {
		return
	}
	p.stores = slices.Delete(p.stores, i, i+1)
	route := r.stores[store]
	if route == nil {
		return
	}
	if j := slices.Index(route.peers, p); j >= 0 {
		route.peers = slices.Delete(route.peers, j, j+1)
	}
	if len(route.peers) == 0 {
		delete(r.stores, store)
	}
}

// leaveStores takes p out of every store it joined.
func (r *room) leaveStores(p *peer) {
	for len(p.stores) > 0 {
		r.leaveStore(p, p.stores[len(p.stores)-1])
	}
}

func (r *room) storePush(ctx actor.Context, p *peer, m *inbound) {
	sm := &r.sys.metrics.store
	route := r.joined(p, m.storeID())
	if route == nil {
		sm.pushRejected[rejectNotJoined].Inc()
		r.sendError(ctx, p, m, errNotJoined)
		return
	}
	var op *heads.Op
	if m.events == 0 {
		op = r.ask(heads.Read, m.storeID())
	} else {
		op = r.keeperOp()
		op.Parent, op.Next = m.store.firstParent, m.store.head
		op = r.ask(heads.Append, m.storeID())
	}
	switch op.Result {
	case heads.Mismatch:
		sm.pushRejected[rejectMismatch].Inc()
		head := op.Head
		r.sendStoreError(ctx, p, m, errMismatch, &head)
		return
	case heads.Failed, heads.Unknown:
		sm.pushRejected[rejectInternal].Inc()
		r.sendError(ctx, p, m, errHeadsDown)
		return
	}
	// Written before the push is queued to anyone: the writer of the
	// sender's ack reads it.
	m.store.head = op.Head
	if m.events > 0 {
		sm.pushAccepted.Inc()
		r.relayed++
		for _, q := range route.peers {
			if q != p && !r.dropRelay() && r.deliver(ctx, q, m) && q.c.proxy {
				r.remote = append(r.remote, q)
			}
		}
		if len(r.remote) > 0 {
			r.confirmRemote()
		}
	}
	r.deliver(ctx, p, m)
	r.dropSlow()
	r.sys.metrics.RelayLatency.Observe(time.Since(m.read).Seconds())
}

// answerStorePeerPull is the server's own answer to a sequenced peer_pull
// that nobody can take: no events, and the store's head.
func (r *room) answerStorePeerPull(ctx actor.Context, p *peer, m *inbound) {
	op := r.ask(heads.Read, m.storeID())
	if op.Result != heads.Unchanged {
		r.sendError(ctx, p, m, errHeadsDown)
		return
	}
	head := op.Head
	_, f := wsframe.AppendText(make([]byte, 0, 256+len(m.requestID)+len(m.storeID())+len(head.ClientID)+len(head.SessionID)),
		func(b []byte) []byte {
			return protocol.AppendStorePeerPullResponse(b, r.sys.now(), []byte(m.requestID), m.storeID(), head)
		})
	r.deliver(ctx, p, &serverFrame{b: f, kind: outPeerPullResponse})
	r.dropSlow()
}

// sendStoreError answers m with e; head, when set, is the store's head
// that the error reports (store_conflict, head_mismatch).
func (r *room) sendStoreError(ctx actor.Context, p *peer, m *inbound, e *protocol.Error, head *protocol.Head) {
	r.sys.metrics.errors[e.Code].Inc()
	to := protocol.ReplyTo{Type: m.typ, RequestID: m.requestID, StoreID: m.storeID()}
	_, f := wsframe.AppendText(make([]byte, 0, 256+len(to.RequestID)+len(to.StoreID)), func(b []byte) []byte {
		return protocol.AppendErrorReply(b, r.sys.now(), e.Code, e.Message, to, head)
	})
	r.deliver(ctx, p, &serverFrame{b: f, kind: outError})
	r.dropSlow()
}
