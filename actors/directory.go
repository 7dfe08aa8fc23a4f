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
	user  string
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
	user string
	room *actor.PID
}

type (
	drainAll struct{}
	abortAll struct{}
	sweep    struct{}
)

// errAdmitFailed answers an admission the directory failed to handle.
var errAdmitFailed = errors.New("actors: admission failed")

// admit finds or creates user's room and counts one more connection in it.
func (d *directory) admit(ctx actor.Context, user string) admitReply {
	if h := d.sys.cfg.FaultHook; h != nil {
		h("directory", user)
	}
	cfg, st := &d.sys.cfg, d.state
	if d.sys.draining.Load() {
		return admitReply{err: ErrDraining}
	}
	if cfg.MaxConns > 0 && st.total >= cfg.MaxConns {
		return admitReply{err: ErrGlobalLimit}
	}
	e := st.rooms[user]
	if e != nil && e.conns >= cfg.MaxConnsPerUser {
		return admitReply{err: ErrUserLimit}
	}
	if e == nil {
		opts := d.sys.roomOpts
		var disp *roomDispatcher
		if d.sys.cfg.RoomDispatcher == DispatchInline {
			disp = &roomDispatcher{throughput: d.sys.cfg.RoomThroughput}
			opts = append(opts[:len(opts):len(opts)], actor.WithDispatcher(disp))
		}
		props := actor.PropsFromProducer(func() actor.Actor { return newRoom(d.sys, user) }, opts...)
		e = &roomEntry{pid: ctx.Spawn(props), disp: disp}
		st.rooms[user] = e
		d.sys.metrics.Rooms.Inc()
	}
	e.conns++
	st.total++
	return admitReply{room: e.pid, disp: e.disp}
}

type roomEntry struct {
	pid   *actor.PID
	disp  *roomDispatcher
	conns int
}

// directoryState is the directory's bookkeeping: each user's room and
// admitted connections, and their total.
type directoryState struct {
	rooms map[string]*roomEntry
	total int
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
		r = d.admit(ctx, m.user)
	case *release:
		e := st.rooms[m.user]
		if e == nil || !e.pid.Equal(m.room) {
			return
		}
		e.conns--
		st.total--
		if e.conns <= 0 {
			delete(st.rooms, m.user)
			d.sys.metrics.Rooms.Dec()
			ctx.Stop(e.pid)
		}
	case drainAll, abortAll, sweep:
		for _, e := range st.rooms {
			ctx.Send(e.pid, m)
		}
	case *actor.Terminated:
		// A room stopped by its supervisor after a failure: forget it so the
		// user's next connection gets a new room. Its connections are being
		// closed; their releases name the dead room and are ignored.
		for user, e := range st.rooms {
			if e.pid.Equal(m.Who) {
				delete(st.rooms, user)
				st.total -= e.conns
				d.sys.metrics.Rooms.Dec()
				break
			}
		}
	}
}
