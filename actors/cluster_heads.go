package actors

import (
	"time"

	"github.com/livestore-relay/livestore-relay/actors/clusterpb"
	"github.com/livestore-relay/livestore-relay/actors/heads"
	"github.com/livestore-relay/livestore-relay/protocol"
)

// Store heads in a cluster.
//
// A store's head lives with its user's room. With the etcd provider every
// head is kept in etcd and each change is a compare-and-set there
// (cluster_etcdheads.go): whichever node holds the room, and even while two
// nodes briefly both believe they do, a push is accepted only on the head
// etcd holds. With the static and Kubernetes providers heads are kept by
// each node's own keeper, and a room that moves gracefully (a node joins,
// or its owner drains) hands its user's heads to the new owner before its
// connections reconnect there. A head whose node was killed is lost; the
// next owner learns it again from the devices' joins (docs/CLUSTER.md).

// handover gives the user's heads to owner, waiting for it to take them
// (bounded by DeliverTimeout), and reports whether it did or nothing was
// to be given. Nothing to do with heads kept in etcd.
func (r *room) handover(owner string) bool {
	cl := r.sys.cl
	if cl == nil || owner == "" || owner == cl.self || cl.sharedHeads {
		return true
	}
	op := &heads.Op{Kind: heads.List, User: r.user}
	r.sys.heads.Do(op)
	if len(op.All) == 0 {
		return true
	}
	msg := &clusterpb.HeadsHandover{User: r.user, Heads: make([]*clusterpb.StoreHead, 0, len(op.All))}
	for store, h := range op.All {
		msg.Heads = append(msg.Heads, &clusterpb.StoreHead{Store: store, EventNumber: h.EventNumber, ClientId: h.ClientID, SessionId: h.SessionID})
	}
	if _, err := r.sys.root.RequestFuture(endpointPID(owner), msg, cl.cfg.DeliverTimeout).Result(); err != nil {
		r.sys.log.Warn().Err(err).Str("user", r.user).Str("owner", owner).Int("heads", len(msg.Heads)).
			Msg("store heads could not be handed to the room's new node; it will learn them from the devices")
		return false
	}
	return true
}

// takeHeads takes a moving room's heads as joins announcing them: a head
// this node already has at the same or a higher eventNumber stays.
func (e *endpoint) takeHeads(m *clusterpb.HeadsHandover) {
	s := e.n.sys
	for _, h := range m.Heads {
		op := &heads.Op{Kind: heads.Join, User: m.User, Store: h.Store,
			Announced: protocol.Head{EventNumber: h.EventNumber, ClientID: h.ClientId, SessionID: h.SessionId}}
		s.heads.Do(op)
		if op.Result == heads.Conflict || op.Result == heads.Failed || op.Result == heads.LimitExceeded {
			s.log.Warn().Str("user", m.User).Int64("eventNumber", h.EventNumber).Int("result", int(op.Result)).
				Msg("a handed-over store head was not taken")
		}
	}
}

// headStore is where the rooms' store heads live: the process's keeper,
// or etcd in a cluster whose members come from etcd.
type headStore interface {
	Do(op *heads.Op)
	Close() error
}

// openHeads opens the head store the configuration asks for.
func (s *System) openHeads() (headStore, error) {
	cfg := &s.cfg
	if c := cfg.Cluster; c != nil && c.Provider == "etcd" {
		name := c.Name
		if name == "" {
			name = DefaultClusterName
		}
		h, err := newEtcdHeads(c.Etcd, name, cfg.MaxStoresPerUser)
		if err != nil {
			return nil, err
		}
		s.heads = h
		if cfg.StateDir != "" {
			s.log.Warn().Msg("--state-dir is not used: with the etcd provider store heads are kept in etcd")
		}
		s.log.Info().Msg("store heads are kept in etcd")
		return h, nil
	}
	keeper, err := heads.Open(heads.Config{Dir: cfg.StateDir, MaxStoresPerUser: cfg.MaxStoresPerUser, Logger: cfg.Logger,
		ObserveWrite: func(d time.Duration) { cfg.Metrics.store.writeSeconds.Observe(d.Seconds()) }})
	if err != nil {
		return nil, err
	}
	s.heads = keeper
	switch {
	case keeper.Durable():
		s.log.Info().Str("dir", cfg.StateDir).Int("heads", keeper.Restored()).Msg("store heads are kept in the state directory")
	default:
		s.log.Warn().Msg("no --state-dir: store heads are kept in memory and will not survive a restart")
	}
	return keeper, nil
}
