package actors

import (
	"errors"

	"github.com/asynkron/protoactor-go/actor"
)

// The directory is the only place rooms are created and stopped, so a room
// that is stopping can never swallow a newcomer of its user: the directory
// counts each user's admitted connections and stops the room only when that
// count reaches zero, after which the next admission creates a fresh room.

type admit struct {
	user string
	// In cluster mode: edge names the node that owns user when it is not
	// this one (the directory then gives the user an edge, not a room);
	// proxy is a connection held by another node, counted against the
	// user's limit but not this node's.
	edge  string
	proxy bool
	reply chan<- admitReply
}

type admitReply struct {
	room *actor.PID
	disp *roomDispatcher // nil unless rooms run inline
	err  error
}

// release gives back one admitted slot. room names the room it was admitted
// to, so that a slot of a failed room is not taken from its successor.
type release struct {
	user  string
	room  *actor.PID
	proxy bool
}

type (
	drainAll struct{}
	abortAll struct{}
	sweep    struct{}
)

// errAdmitFailed answers an admission the directory failed to handle.
var errAdmitFailed = errors.New("actors: admission failed")

// admit finds or creates user's room and counts one more connection in it.
func (d *directory) admit(ctx actor.Context, m *admit) admitReply {
	user := m.user
	if h := d.sys.cfg.FaultHook; h != nil {
		h("directory", user)
	}
	cfg, st := &d.sys.cfg, d.state
	if d.sys.draining.Load() {
		return admitReply{err: ErrDraining}
	}
	if !m.proxy && cfg.MaxConns > 0 && st.total >= cfg.MaxConns {
		return admitReply{err: ErrGlobalLimit}
	}
	e := st.rooms[user]
	if e != nil && (e.moving || e.edge != m.edge) {
		return admitReply{err: errMoving} // retried once the old one is gone
	}
	if e != nil && e.conns+e.proxies >= cfg.MaxConnsPerUser {
		return admitReply{err: ErrUserLimit}
	}
	if e == nil {
		e = d.spawn(ctx, user, m.edge)
	}
	if m.proxy {
		e.proxies++
		return admitReply{room: e.pid, disp: e.disp}
	}
	e.conns++
	st.total++
	return admitReply{room: e.pid, disp: e.disp}
}

// spawn starts user's room, or its edge when edge names another owner.
func (d *directory) spawn(ctx actor.Context, user, edge string) *roomEntry {
	e := &roomEntry{edge: edge}
	if edge == "" {
		opts := d.sys.roomOpts
		if d.sys.cfg.RoomDispatcher == DispatchInline {
			e.disp = &roomDispatcher{throughput: d.sys.cfg.RoomThroughput}
			opts = append(opts[:len(opts):len(opts)], actor.WithDispatcher(e.disp))
		}
		if props := d.sys.roomProps; props != nil {
			d.state.spawning.user, d.state.spawning.disp = user, e.disp
			e.pid = ctx.Spawn(props)
			d.state.spawning.user, d.state.spawning.disp = "", nil
		} else {
			props := actor.PropsFromProducer(func() actor.Actor { return newRoom(d.sys, user) }, opts...)
			e.pid = ctx.Spawn(props)
		}
		d.sys.metrics.Rooms.Inc()
		if cl := d.sys.cl; cl != nil {
			cl.m.ownedRooms.Inc()
		}
	} else {
		// An edge forwards to the owner node: a goroutine per mailbox run,
		// whatever rooms do.
		opts := append(d.sys.roomOpts[:len(d.sys.roomOpts):len(d.sys.roomOpts)], actor.WithDispatcher(actor.NewDefaultDispatcher(d.sys.cfg.RoomThroughput)))
		props := actor.PropsFromProducer(func() actor.Actor { return newEdge(d.sys, user, edge) }, opts...)
		e.pid = ctx.Spawn(props)
	}
	d.state.rooms[user] = e
	return e
}

// forget drops user's entry, whose actor has stopped or is stopping.
func (d *directory) forget(user string, e *roomEntry) {
	delete(d.state.rooms, user)
	if e.edge == "" {
		d.sys.metrics.Rooms.Dec()
		if cl := d.sys.cl; cl != nil {
			cl.m.ownedRooms.Dec()
		}
	}
}

type roomEntry struct {
	pid   *actor.PID
	conns int // admitted connections of this node
	// Cluster mode only.
	proxies int             // connections held by other nodes (a room's)
	edge    string          // the owner's address when this is an edge, not a room
	moving  bool            // closing its connections: the owner has changed
	disp    *roomDispatcher // the room's, when rooms run inline
}

// directoryState is the directory's bookkeeping: each user's room and
// admitted connections, and their total.
type directoryState struct {
	rooms map[string]*roomEntry
	total int
	// spawning is the room being spawned with the shared Props
	// (System.roomProps), for its producers: set and read on the
	// directory's goroutine only, around one Spawn.
	spawning struct {
		user string
		disp *roomDispatcher
	}
}

type directory struct {
	sys   *System
	state *directoryState
}

func (d *directory) Receive(ctx actor.Context) {
	st := d.state
	switch m := ctx.Message().(type) {
	case *admit:
		r := admitReply{err: errAdmitFailed}
		// Deferred so that an admission that fails still gets its answer.
		defer func() { m.reply <- r }()
		r = d.admit(ctx, m)
	case *release:
		e := st.rooms[m.user]
		if e == nil || !e.pid.Equal(m.room) {
			return
		}
		if m.proxy {
			e.proxies--
		} else {
			e.conns--
			st.total--
		}
		if e.conns+e.proxies <= 0 {
			d.forget(m.user, e)
			ctx.Stop(e.pid)
		}
	case drainAll, abortAll, sweep:
		for _, e := range st.rooms {
			ctx.Send(e.pid, m)
		}
	case rehome:
		d.rehome(ctx)
	case *actor.Terminated:
		// A room stopped by its supervisor after a failure: forget it so the
		// user's next connection gets a new room. Its connections are being
		// closed; their releases name the dead room and are ignored.
		for user, e := range st.rooms {
			if e.pid.Equal(m.Who) {
				d.forget(user, e)
				st.total -= e.conns
				break
			}
		}
	}
}

// rehome closes the connections of every room and edge whose owner is no
// longer the one they were made for; they leave the map as their last
// connection is released, and admissions of their users wait until then.
func (d *directory) rehome(ctx actor.Context) {
	cl := d.sys.cl
	if cl == nil {
		return
	}
	for user, e := range d.state.rooms {
		if e.moving {
			continue
		}
		owner := cl.owner(user)
		if owner == "" {
			continue // this node has left or not joined: nobody to move to
		}
		mine := e.edge == "" && owner == cl.self
		if mine || e.edge != "" && e.edge == owner {
			continue
		}
		e.moving = true
		if e.edge == "" {
			cl.m.rehomed.Inc()
		}
		d.sys.log.Info().Str("user", user).Str("owner", owner).Bool("room", e.edge == "").Msg("re-homing: the user's room moved")
		ctx.Send(e.pid, moveOut{owner: owner})
	}
}
