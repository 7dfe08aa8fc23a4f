// Package actors holds the relay's routing: one room actor per user that owns
// the user's peer table, a directory that creates and stops rooms, and one
// connection actor per socket that is the only writer of that socket.
//
// Supervision:
//   - The directory resumes if it fails: the message it was handling is
//     dropped (an admission gets an error, so the upgrade is refused with
//     503) and it goes on with the same state. Every room, count and
//     connection stays. It is not restarted, because protoactor stops every
//     child of a restarting actor, and the rooms are its children.
//   - A room that fails is stopped, not restarted: a fresh room would have an
//     empty peer table while connections still believe they are in it. Its
//     Stopping handler closes every connection with 1011 so clients reconnect
//     into a new room.
//   - A connection actor that fails is stopped; its Stopping handler closes
//     the socket with 1011 and leaves the room.
//
// Files, by owner:
//   - system.go, directory.go: the System and the directory actor.
//   - room.go, store.go: the room actor (store.go: sequenced stores); the
//     head keeper is package actors/heads.
//   - session.go: Session, the reader's side of a connection; it runs on
//     the connection's reader goroutine.
//   - conn.go: conn, the state of one connection that the reader, the
//     room, timers and the connection actor share, with its methods that
//     are safe from any goroutine (enqueue, close). Kept apart from the
//     actor because everything in it is shared and everything in the
//     actor's file is not.
//   - connactor.go: the connection actor, its messages, private state and
//     handlers: the only writer of the socket.
//   - close.go, metrics.go, store_metrics.go: close reasons, metrics.
package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/livestore-relay/livestore-relay/actors/clusterpb"
	"github.com/livestore-relay/livestore-relay/actors/heads"
	"github.com/livestore-relay/livestore-relay/protocol"
)

// Defaults of Config: a field left zero (or negative) takes its default.
// The relay's flags take theirs from here too.
const (
	DefaultMaxConnsPerUser     = 64
	DefaultMaxEventsPerPush    = protocol.DefaultMaxEventsPerPush
	DefaultMaxPendingPeerPulls = 16
	DefaultPeerPullTimeout     = 60 * time.Second
	DefaultSendQueueMessages   = 1024
	DefaultSendQueueBytes      = 8 << 20
	DefaultRate                = 200.0 // messages per second per connection
	DefaultRateBurst           = 400
	DefaultPingInterval        = 30 * time.Second
	DefaultRoomThroughput      = 300
	DefaultConnThroughput      = 300
	DefaultMailbox             = MailboxCompact
	DefaultRoomDispatcher      = DispatchInline
	DefaultConnDispatcher      = DispatchInline
	DefaultMaxStoresPerUser    = heads.DefaultMaxStoresPerUser
)

// Mailboxes: how an actor's messages wait for it.
const (
	// MailboxCompact holds nothing while empty and takes a message that
	// finds it empty without allocating (mailbox.go).
	MailboxCompact = "compact"
	// MailboxRing is protoactor's default unbounded ring buffer.
	MailboxRing = "ring"
	// MailboxLockfree is protoactor's unbounded MPSC linked queue.
	MailboxLockfree = "lockfree"
)

// Dispatchers: where an actor's mailbox runs when a message arrives for an
// actor that is idle.
const (
	// DispatchGoroutine starts a goroutine for each run of the mailbox
	// (protoactor's default dispatcher).
	DispatchGoroutine = "goroutine"
	// DispatchInline runs the mailbox on the goroutine that sent the
	// message, at once; a message for an actor already running is queued
	// for that run, as with any dispatcher, so the actor still handles one
	// message at a time and in order.
	DispatchInline = "inline"
)

// Config tunes the routing layer. The zero value of each field means the
// default named in its comment.
type Config struct {
	MaxConnsPerUser     int           // DefaultMaxConnsPerUser
	MaxConns            int           // 0: no limit
	MaxEventsPerPush    int           // DefaultMaxEventsPerPush
	MaxPendingPeerPulls int           // DefaultMaxPendingPeerPulls
	PeerPullTimeout     time.Duration // DefaultPeerPullTimeout
	SendQueueMessages   int           // DefaultSendQueueMessages
	SendQueueBytes      int64         // DefaultSendQueueBytes
	Rate                float64       // DefaultRate, messages per second per connection
	RateBurst           int           // DefaultRateBurst
	PingInterval        time.Duration // DefaultPingInterval
	// RoomThroughput and ConnThroughput are how many messages an actor
	// handles before yielding its goroutine (protoactor dispatcher throughput).
	RoomThroughput int // DefaultRoomThroughput
	ConnThroughput int // DefaultConnThroughput
	// Mailbox is MailboxCompact, MailboxRing or MailboxLockfree; "" is
	// DefaultMailbox.
	// Bounded mailboxes are not offered: at the pinned protoactor version
	// they busy-spin when full.
	Mailbox string
	// RoomDispatcher and ConnDispatcher are DispatchGoroutine or
	// DispatchInline; "" is DefaultRoomDispatcher, DefaultConnDispatcher.
	// A connection actor never waits (its socket tells it when a full
	// socket takes bytes again), so it can run inline on the room's
	// goroutine. A room may wait for the head keeper (sequenced stores).
	RoomDispatcher string
	ConnDispatcher string
	Logger         zerolog.Logger
	Metrics        *Metrics // required
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// FaultHook, when set, is called by the directory with the user of
	// each admission before handling it, and by a room with its user before
	// each joining connection and each client message; a panic in it is a
	// failure of that actor. It exists for tests that inject failures;
	// leave it nil otherwise.
	FaultHook func(actor, user string)

	// StateDir keeps store heads in a file there; empty keeps them in
	// memory for the life of the process only.
	StateDir string
	// MaxStoresPerUser bounds the sequenced stores with a head per user.
	MaxStoresPerUser int // DefaultMaxStoresPerUser

	// Cluster, when set, makes this node one of several that serve as one
	// (cluster.go); nil is a single relay with no cluster code in its way.
	Cluster *ClusterConfig
}

func (c *Config) setDefaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.MaxConnsPerUser, DefaultMaxConnsPerUser)
	def(&c.MaxEventsPerPush, DefaultMaxEventsPerPush)
	def(&c.MaxPendingPeerPulls, DefaultMaxPendingPeerPulls)
	def(&c.MaxStoresPerUser, DefaultMaxStoresPerUser)
	def(&c.SendQueueMessages, DefaultSendQueueMessages)
	def(&c.RateBurst, DefaultRateBurst)
	def(&c.RoomThroughput, DefaultRoomThroughput)
	def(&c.ConnThroughput, DefaultConnThroughput)
	if c.PeerPullTimeout <= 0 {
		c.PeerPullTimeout = DefaultPeerPullTimeout
	}
	if c.SendQueueBytes <= 0 {
		c.SendQueueBytes = DefaultSendQueueBytes
	}
	if c.Rate <= 0 {
		c.Rate = DefaultRate
	}
	if c.PingInterval <= 0 {
		c.PingInterval = DefaultPingInterval
	}
	if c.Mailbox == "" {
		c.Mailbox = DefaultMailbox
	}
	if c.RoomDispatcher == "" {
		c.RoomDispatcher = DefaultRoomDispatcher
	}
	if c.ConnDispatcher == "" {
		c.ConnDispatcher = DefaultConnDispatcher
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Admission errors, returned by Admit.
var (
	ErrUserLimit   = errors.New("user connection limit reached")
	ErrGlobalLimit = errors.New("server connection limit reached")
	ErrDraining    = errors.New("server is draining")
)

// System is the running routing layer.
type System struct {
	cfg        Config
	log        zerolog.Logger
	metrics    *Metrics
	as         *actor.ActorSystem
	root       *actor.RootContext
	directory  *actor.PID
	roomOpts   []actor.PropsOption
	roomProps  *actor.Props // shared by the rooms when it can be (NewSystem); else each has its own
	connProps  *actor.Props
	proxyProps *actor.Props // connection actors of proxies (cluster.go)
	stopSweep  chan struct{}
	swept      sync.WaitGroup
	decoder    *protocol.Decoder
	batches    sync.Pool // *batch
	draining   atomic.Bool
	conns      sync.WaitGroup
	nextID     atomic.Uint64

	heads headStore    // store heads; outlives every room
	cl    *clusterNode // nil unless in cluster mode
}

// NewSystem starts the actor system and the directory.
func NewSystem(cfg Config) (*System, error) {
	cfg.setDefaults()
	if cfg.Metrics == nil {
		return nil, errors.New("actors: Config.Metrics is required")
	}
	var mailbox func(gauge prometheus.Gauge) actor.MailboxProducer
	switch cfg.Mailbox {
	case MailboxCompact:
		mailbox = func(g prometheus.Gauge) actor.MailboxProducer {
			if g == nil {
				return compactMailboxes(nil)
			}
			return compactMailboxes(&depthGauge{g})
		}
	case MailboxRing, MailboxLockfree:
		queue := actor.Unbounded
		if cfg.Mailbox == MailboxLockfree {
			queue = actor.UnboundedLockfree
		}
		mailbox = func(g prometheus.Gauge) actor.MailboxProducer {
			if g == nil {
				return queue()
			}
			return queue(depthGauge{g})
		}
	default:
		return nil, fmt.Errorf("actors: mailbox must be %q, %q or %q", MailboxCompact, MailboxRing, MailboxLockfree)
	}
	if _, err := dispatcher(cfg.RoomDispatcher, cfg.RoomThroughput); err != nil {
		return nil, fmt.Errorf("actors: room dispatcher: %w", err)
	}
	connDispatcher, err := dispatcher(cfg.ConnDispatcher, cfg.ConnThroughput)
	if err != nil {
		return nil, fmt.Errorf("actors: connection dispatcher: %w", err)
	}
	s := &System{cfg: cfg, log: cfg.Logger, metrics: cfg.Metrics}
	keeper, err := s.openHeads()
	if err != nil {
		return nil, err
	}
	logger := slog.New(zerolog.NewSlogHandler(cfg.Logger.With().Str("component", "actor").Logger().Level(maxLevel(cfg.Logger.GetLevel(), zerolog.WarnLevel))))
	s.as = actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return logger }),
		actor.WithDeadLetterThrottleCount(1), actor.WithDeadLetterThrottleInterval(time.Second))
	s.root = s.as.Root
	s.decoder = protocol.NewDecoder(protocol.Limits{MaxEventsPerPush: cfg.MaxEventsPerPush})
	s.batches.New = func() any { return &batch{scratch: make([]byte, 0, batchScratch)} }

	stopOnFailure := actor.NewOneForOneStrategy(0, 0, func(any) actor.Directive { return actor.StopDirective })
	s.roomOpts = []actor.PropsOption{actor.WithMailbox(mailbox(cfg.Metrics.RoomMailbox))}
	if cfg.RoomDispatcher == DispatchGoroutine {
		s.roomOpts = append(s.roomOpts, actor.WithDispatcher(actor.NewDefaultDispatcher(cfg.RoomThroughput)))
	} // else each room has its own (directory.go)
	connMailbox := mailbox(nil) // its depth is the send queue, counted by the connection
	s.connProps = actor.PropsFromProducer(func() actor.Actor { return &connActor{sys: s} },
		actor.WithMailbox(connMailbox), actor.WithDispatcher(connDispatcher), actor.WithGuardian(stopOnFailure))
	// A proxy's socket waits for the other node: its writer never runs
	// inline.
	s.proxyProps = actor.PropsFromProducer(func() actor.Actor { return &connActor{sys: s} },
		actor.WithMailbox(connMailbox), actor.WithDispatcher(actor.NewDefaultDispatcher(cfg.ConnThroughput)), actor.WithGuardian(stopOnFailure))
	// Not restart: protoactor stops every child of a restarting actor, and
	// the rooms are the directory's children (and a shared room Props
	// could not produce a room again: System.roomProps).
	resumeOnFailure := actor.NewOneForOneStrategy(0, 0, func(any) actor.Directive { return actor.ResumeDirective })
	state := &directoryState{rooms: make(map[string]*roomEntry)}
	if cfg.Mailbox == MailboxCompact && cfg.RoomDispatcher == DispatchInline {
		// Every room shares one Props (a Props per room costs about 230
		// bytes): its producers, which run inside the directory's Spawn and
		// on its goroutine, take the room's user and dispatcher from there.
		var g *depthGauge
		if cfg.Metrics.RoomMailbox != nil {
			g = &depthGauge{cfg.Metrics.RoomMailbox}
		}
		s.roomProps = actor.PropsFromProducer(func() actor.Actor { return newRoom(s, state.spawning.user) },
			actor.WithMailbox(func() actor.Mailbox {
				return &compactMailbox{gauge: g, dispatch: state.spawning.disp}
			}))
	}
	dirProps := actor.PropsFromProducer(func() actor.Actor { return &directory{sys: s, state: state} },
		actor.WithGuardian(resumeOnFailure), actor.WithSupervisor(stopOnFailure),
		actor.WithMailbox(mailbox(cfg.Metrics.DirMailbox)))
	pid, err := s.root.SpawnNamed(dirProps, "directory")
	if err != nil {
		_ = keeper.Close()
		return nil, err
	}
	s.directory = pid
	if cfg.Cluster != nil {
		if _, err := startCluster(s, *cfg.Cluster, cfg.Metrics.reg); err != nil {
			s.cl = nil
			s.as.Shutdown()
			_ = keeper.Close()
			return nil, err
		}
	}
	s.stopSweep = make(chan struct{})
	s.swept.Add(1)
	go s.sweeper()
	return s, nil
}

// roomDispatcher runs a room's mailbox on the goroutine that sends it a
// message (a reader, a connection actor, a timer), until the room is about
// to wait: a message naming a sequenced store makes the room wait for the
// head keeper, and a reader must never wait for it, since every connection
// it reads would wait too. The reader marks the room before it sends such a
// message, and from then on the room starts a goroutine for each run of its
// mailbox, for good. A run already going on a reader when the mark is set
// may still take the first such messages (one keeper round trip each).
type roomDispatcher struct {
	throughput int
	waits      atomic.Bool
}

func (d *roomDispatcher) Schedule(fn func()) {
	if d.waits.Load() {
		go fn()
		return
	}
	fn()
}

func (d *roomDispatcher) Throughput() int { return d.throughput }

func (d *roomDispatcher) inline() bool { return !d.waits.Load() }

// inlineDispatcher runs a mailbox on the goroutine that sends the message.
type inlineDispatcher int

func (inlineDispatcher) Schedule(fn func()) { fn() }

func (d inlineDispatcher) Throughput() int { return int(d) }

func (inlineDispatcher) inline() bool { return true }

func dispatcher(kind string, throughput int) (actor.Dispatcher, error) {
	switch kind {
	case DispatchGoroutine:
		return actor.NewDefaultDispatcher(throughput), nil
	case DispatchInline:
		return inlineDispatcher(throughput), nil
	}
	return nil, fmt.Errorf("%q is neither %q nor %q", kind, DispatchGoroutine, DispatchInline)
}

// sweeper asks every room, twice per ping interval, to ping its quiet
// connections, close its silent ones and watch token expiry. One ticker for
// the whole server instead of a timer per connection keeps idle
// connections small.
func (s *System) sweeper() {
	defer s.swept.Done()
	t := time.NewTicker(s.sweepEvery())
	defer t.Stop()
	for {
		select {
		case <-s.stopSweep:
			return
		case <-t.C:
			s.root.Send(s.directory, sweep{})
		}
	}
}

func (s *System) sweepEvery() time.Duration { return s.cfg.PingInterval / 2 }

func maxLevel(a, b zerolog.Level) zerolog.Level {
	if a > b {
		return a
	}
	return b
}

// Admission is a reserved place for one connection of one user.
type Admission struct {
	sys   *System
	user  string
	room  *actor.PID
	disp  *roomDispatcher
	used  bool
	ended bool
	// In cluster mode, for a connection whose room is on another node:
	// the connection's id, reserved here, and the owner that counted it.
	id    uint64
	owner string
}

// Admit reserves a connection slot for user, enforcing the per-user and
// global limits. The caller must either Open the admission or Cancel it.
func (s *System) Admit(ctx context.Context, user string) (*Admission, error) {
	if s.draining.Load() {
		return nil, ErrDraining
	}
	if s.cl != nil {
		return s.cl.admit(ctx, user)
	}
	return s.admitLocal(ctx, &admit{user: user})
}

// admitLocal asks the directory for a place in the user's room (or edge).
func (s *System) admitLocal(ctx context.Context, m *admit) (*Admission, error) {
	user := m.user
	reply := make(chan admitReply, 1)
	m.reply = reply
	s.root.Send(s.directory, m)
	select {
	case r := <-reply:
		if r.err != nil {
			return nil, r.err
		}
		// Counted from admission, not from Open, so that a drain waits for
		// a connection whose upgrade is still being written.
		s.conns.Add(1)
		return &Admission{sys: s, user: user, room: r.room, disp: r.disp}, nil
	case <-ctx.Done():
		// The directory will answer eventually; give the slot back then.
		go func() {
			if r := <-reply; r.err == nil {
				s.root.Send(s.directory, &release{user: user, room: r.room})
			}
		}()
		return nil, ctx.Err()
	}
}

// Cancel gives back an admission that was not opened.
func (a *Admission) Cancel() {
	if a.used || a.ended {
		return
	}
	a.ended = true
	if a.owner != "" {
		a.sys.root.Send(endpointPID(a.owner), &clusterpb.Detach{User: a.user, Node: a.sys.cl.self, Conn: a.id})
	}
	a.sys.root.Send(a.sys.directory, &release{user: a.user, room: a.room})
	a.sys.conns.Done()
}

// ConnInfo describes an accepted socket.
type ConnInfo struct {
	Expires time.Time // token expiry; zero means none
}

// Open spawns the connection actor for an upgraded socket and joins it to its
// user's room. The returned Session is for the socket's reader.
func (s *System) Open(a *Admission, sock Socket, info ConnInfo) *Session {
	a.used = true
	id := a.id
	if id == 0 {
		id = s.nextID.Add(1)
	}
	c := &conn{
		id:       id,
		user:     a.user,
		room:     a.room,
		roomDisp: a.disp,
		sock:     sock,
		sys:      s,
		opened:   s.cfg.Now().UnixNano(),
	}
	if !info.Expires.IsZero() {
		c.expires = info.Expires.UnixNano()
	}
	c.lastRead.Store(c.opened)
	s.metrics.Connections.Inc()
	// Others read c.pid only after a message sent below (attach, join),
	// which orders their reads after this write.
	c.pid = s.root.Spawn(s.connProps)
	c.proc, c.roomProc = s.localProcess(c.pid), s.localProcess(c.room)
	s.root.Send(c.pid, attach{c: c}) // nobody else knows the PID yet: this is its first message
	s.root.Send(a.room, &join{c: c})
	if s.draining.Load() {
		// Drain may have been broadcast before this join reached the room.
		c.close(CloseGoingAway)
	}
	return newSession(c)
}

// localProcess is the process behind a PID of this node, nil for another
// node's.
func (s *System) localProcess(pid *actor.PID) *actor.ActorProcess {
	p, ok := s.as.ProcessRegistry.Get(pid)
	if !ok {
		return nil
	}
	ap, _ := p.(*actor.ActorProcess)
	return ap
}

// Drain stops admitting connections and closes every open one with 1001.
func (s *System) Drain() {
	s.draining.Store(true)
	if s.cl != nil {
		s.cl.leave()
	}
	s.root.Send(s.directory, drainAll{})
}

// Abort closes the socket of every connection still open, without a close
// frame: for connections that ignored the drain until its deadline.
func (s *System) Abort() {
	s.root.Send(s.directory, abortAll{})
}

// Wait blocks until every opened connection has ended or ctx is done.
func (s *System) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		s.conns.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Shutdown stops the actor system. Connections still open are abandoned.
func (s *System) Shutdown() {
	close(s.stopSweep)
	s.swept.Wait()
	s.root.Stop(s.directory)
	if s.cl != nil {
		s.cl.shutdown()
	}
	s.as.Shutdown()
	// Last: a room still running may be waiting for the keeper.
	if err := s.heads.Close(); err != nil {
		s.log.Error().Err(err).Msg("closing the state file")
	}
}

// Ready reports whether the node takes connections: always on a single
// relay; in cluster mode once it has joined and until it leaves.
func (s *System) Ready() bool { return s.cl == nil || s.cl.ready() }

func (s *System) now() int64 { return s.cfg.Now().UnixMilli() }
