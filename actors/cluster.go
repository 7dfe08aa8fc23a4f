package actors

// Cluster mode: several relay nodes serve as one.
//
// Every user's room lives on exactly one node at a time, its owner, chosen
// by rendezvous hashing (xxhash of member address and user) over the member
// list this node sees. Connections stay on the node that holds their
// socket. On a node that does not own the user, the directory gives the
// user an edge actor instead of a room: it forwards the connections'
// messages (raw bytes and their decoded routing fields) to the owner, and
// queues on the local connections the frames the owner sends back.
//
// On the owner each remote connection is a proxy: a conn whose socket is a
// remoteSocket and whose writer is an ordinary connection actor. The room
// cannot tell a proxy from a local connection, so every routing rule
// (relay, onlinePeers, peer_pull, 4002, per-user limit, stores) holds across
// nodes as on one. A write to a proxy is a request to the edge, answered
// once the frames sit in the real connection's send queue; a room that
// relayed a push to a proxy waits for that answer before it acks the push.
//
// Membership comes from protoactor's cluster providers (static seed list,
// etcd, Kubernetes). When it changes, each node re-homes what it no longer
// owns: rooms and edges whose owner changed close their connections with
// 1012 and clients reconnect to the new owner. See docs/CLUSTER.md.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/identitylookup/disthash"
	"github.com/asynkron/protoactor-go/eventstream"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/livestore-relay/livestore-relay/actors/clusterpb"
	"github.com/livestore-relay/livestore-relay/protocol"
)

// ClusterConfig turns cluster mode on when set in Config.Cluster.
type ClusterConfig struct {
	// Addr is HOST:PORT, the address other nodes reach this node on.
	Addr string
	// Name keeps clusters apart: nodes of different names never mix.
	Name string
	// Provider is "static" (Peers), "etcd" (Etcd) or "kubernetes".
	Provider string
	// Peers is the static seed list; it may name this node.
	Peers []string
	// Etcd is the etcd endpoints, for the etcd provider.
	Etcd []string
	// ProbeInterval is how often the static provider asks each seed
	// whether it is alive (250ms); a seed that has not answered for
	// ProbeFailures (4) probes in a row leaves the member list.
	ProbeInterval time.Duration
	ProbeFailures int
	// DeliverTimeout bounds a write to a connection on another node (2s).
	DeliverTimeout time.Duration
}

// Defaults of ClusterConfig; the relay's flags take theirs from here too.
const (
	DefaultClusterName     = "livestore-relay"
	DefaultClusterProvider = "static"
)

// startTimeout bounds joining at start: a node that cannot reach its
// membership store exits with an error rather than wait.
const startTimeout = 10 * time.Second

// endpointName is the name of each node's cluster endpoint actor.
const endpointName = "relay-cluster"

// clusterNode is this node's part of the cluster. Its fields are set
// before remoting starts and never change, except members, joined and
// leaving: members and joined are written by the provider's topology
// events (one at a time), leaving by Drain; anyone reads them.
type clusterNode struct {
	sys     *System
	cfg     ClusterConfig
	self    string // this node's address, as members know it
	cl      *cluster.Cluster
	static  *staticProvider          // nil with other providers
	members atomic.Pointer[[]string] // sorted member addresses
	joined  atomic.Bool              // this node is in members
	leaving atomic.Bool
	// sharedHeads: store heads live in etcd, not in each node's keeper.
	sharedHeads bool
	pid         *actor.PID // the endpoint actor
	m           clusterMetrics
	topoSub     *eventstream.Subscription
}

type clusterMetrics struct {
	members    prometheus.Gauge
	framesOut  prometheus.Counter
	bytesOut   prometheus.Counter
	framesIn   prometheus.Counter
	bytesIn    prometheus.Counter
	rehomed    prometheus.Counter
	ownedRooms prometheus.Gauge
}

func newClusterMetrics(reg prometheus.Registerer) clusterMetrics {
	const ns = "livestore_relay_cluster"
	m := clusterMetrics{
		members: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "members",
			Help: "Members of the cluster as this node sees them, itself included."}),
		ownedRooms: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "rooms_owned",
			Help: "Rooms this node owns (users with at least one connection anywhere)."}),
		framesOut: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "frames_sent_total",
			Help: "Frames sent to other nodes: client messages to their room, deliveries to their connections."}),
		bytesOut: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "sent_bytes_total",
			Help: "Bytes of frames sent to other nodes."}),
		framesIn: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "frames_received_total",
			Help: "Frames received from other nodes."}),
		bytesIn: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "received_bytes_total",
			Help: "Bytes of frames received from other nodes."}),
		rehomed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "rehomed_rooms_total",
			Help: "Rooms this node owned that moved to another node with the member list; their connections were closed with 1012."}),
	}
	reg.MustRegister(m.members, m.ownedRooms, m.framesOut, m.bytesOut, m.framesIn, m.bytesIn, m.rehomed)
	return m
}

func (c *ClusterConfig) setDefaults() {
	if c.Name == "" {
		c.Name = DefaultClusterName
	}
	if c.Provider == "" {
		c.Provider = DefaultClusterProvider
	}
	if c.ProbeInterval <= 0 {
		c.ProbeInterval = 250 * time.Millisecond
	}
	if c.ProbeFailures <= 0 {
		c.ProbeFailures = 4
	}
	if c.DeliverTimeout <= 0 {
		c.DeliverTimeout = 2 * time.Second
	}
}

// startCluster starts remoting on the actor system and joins the cluster.
func startCluster(s *System, cfg ClusterConfig, reg prometheus.Registerer) (*clusterNode, error) {
	cfg.setDefaults()
	host, portText, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("cluster address %q: %w", cfg.Addr, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port <= 0 || port > 65535 {
		return nil, fmt.Errorf("cluster address %q: bad port", cfg.Addr)
	}
	// remote.Start panics when it cannot listen: find out first.
	bind := cfg.Addr
	if net.ParseIP(host) == nil {
		bind = net.JoinHostPort("0.0.0.0", portText) // a name: listen everywhere, advertise the name
	}
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("cluster address: %w", err)
	}
	_ = ln.Close()
	bindHost, _, _ := net.SplitHostPort(bind)

	n := &clusterNode{sys: s, cfg: cfg, self: cfg.Addr, sharedHeads: cfg.Provider == "etcd"}
	n.m = newClusterMetrics(reg)
	// Set before anything can run that reads it (the directory re-homes on
	// the first member list).
	s.cl = n
	var provider cluster.ClusterProvider
	switch cfg.Provider {
	case "static":
		n.static = newStaticProvider(n)
		provider = n.static
	case "etcd", "kubernetes":
		if h, ok := s.heads.(*etcdHeads); ok {
			// The provider would wait for etcd forever: fail at start instead.
			ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
			_, err := h.client.Get(ctx, etcdBaseKey, clientv3.WithCountOnly())
			cancel()
			if err != nil {
				return nil, fmt.Errorf("etcd at %s: %w", strings.Join(cfg.Etcd, ","), err)
			}
		}
		provider, err = newProvider(cfg)
		if err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown cluster provider %q", cfg.Provider)
	}
	// Frames are up to --max-message-bytes; a batch of envelopes holds many.
	const maxMsg = 256 << 20
	rc := remote.Configure(bindHost, port,
		remote.WithAdvertisedHost(cfg.Addr),
		remote.WithEndpointWriterBatchSize(64),
		remote.WithServerOptions(grpc.MaxRecvMsgSize(maxMsg), grpc.MaxSendMsgSize(maxMsg)),
		remote.WithDialOptions(grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsg), grpc.MaxCallSendMsgSize(maxMsg))))
	cc := cluster.Configure(cfg.Name, provider, disthash.New(), rc,
		cluster.WithHeartbeatExpiration(time.Hour)) // membership is the provider's alone
	// Never gossip: it would block members on heartbeats of its own.
	cc.GossipInterval = time.Hour
	n.cl = cluster.New(s.as, cc)

	// The endpoint actor exists before anyone can reach this node.
	props := actor.PropsFromProducer(func() actor.Actor { return &endpoint{n: n, proxies: make(map[proxyKey]*conn)} })
	n.pid, err = s.root.SpawnNamed(props, endpointName)
	if err != nil {
		return nil, fmt.Errorf("cluster endpoint: %w", err)
	}
	sub := s.as.EventStream.Subscribe(func(evt any) {
		if t, ok := evt.(*cluster.ClusterTopology); ok {
			n.topology(t)
		}
	})
	n.topoSub = sub
	// StartMember starts remoting, then the provider (and sleeps a second).
	started := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				started <- fmt.Errorf("cluster: %v", r)
			}
		}()
		n.cl.StartMember()
		started <- nil
	}()
	select {
	case err := <-started:
		if err != nil {
			return nil, err
		}
	case <-time.After(startTimeout + 2*time.Second):
		return nil, fmt.Errorf("cluster: the %s provider did not start within %v", cfg.Provider, startTimeout+2*time.Second)
	}
	// Membership is the provider's alone: protoactor's gossip would also
	// block members on its own heartbeats, and it reads the block list
	// without the lock its writers take.
	n.cl.Gossip.Shutdown()
	s.log.Info().Str("addr", cfg.Addr).Str("provider", cfg.Provider).Str("cluster", cfg.Name).Msg("cluster member started")
	return n, nil
}

// topology takes a new member list from the provider.
func (n *clusterNode) topology(t *cluster.ClusterTopology) {
	addrs := make([]string, 0, len(t.Members))
	for _, m := range t.Members {
		addrs = append(addrs, m.Address())
	}
	slices.Sort(addrs)
	addrs = slices.Compact(addrs)
	old := n.members.Swap(&addrs)
	n.m.members.Set(float64(len(addrs)))
	n.joined.Store(slices.Contains(addrs, n.self))
	var gone []string
	if old != nil {
		for _, a := range *old {
			if !slices.Contains(addrs, a) {
				gone = append(gone, a)
			}
		}
	}
	n.sys.log.Info().Strs("members", addrs).Strs("left", gone).Msg("cluster members changed")
	// The directory re-homes what moved; the endpoint forgets connections
	// of nodes that left.
	n.sys.root.Send(n.sys.directory, rehome{})
	if len(gone) > 0 {
		n.sys.root.Send(n.pid, &nodesLeft{addrs: gone})
	}
}

// owner is the member that owns user's room in this node's view, or ""
// before this node has joined.
func (n *clusterNode) owner(user string) string {
	ms := n.members.Load()
	if ms == nil || !n.joined.Load() {
		return ""
	}
	return rendezvous(*ms, user)
}

// rendezvous picks the member with the highest hash of (member, user):
// each user lands on each member with equal chance, and a member that
// joins takes over only the users for which it scores highest.
func rendezvous(members []string, user string) string {
	var best string
	var bestScore uint64
	var d xxhash.Digest
	for _, m := range members {
		d.Reset()
		_, _ = d.WriteString(m)
		_, _ = d.Write([]byte{0})
		_, _ = d.WriteString(user)
		if s := d.Sum64(); best == "" || s > bestScore {
			best, bestScore = m, s
		}
	}
	return best
}

// endpointPID is the cluster endpoint of node.
func endpointPID(node string) *actor.PID { return actor.NewPID(node, endpointName) }

// leave tells the cluster this node is going: the static provider stops
// answering as a member, other providers deregister it.
func (n *clusterNode) leave() {
	if n.leaving.Swap(true) {
		return
	}
	switch {
	case n.static != nil:
		// It answers probes as leaving from now on; the members are told
		// at once.
		if ms := n.members.Load(); ms != nil {
			for _, m := range *ms {
				if m != n.self {
					n.sys.root.Send(endpointPID(m), &clusterpb.Leave{Cluster: n.cfg.Name, Node: n.self})
				}
			}
		}
	case n.cfg.Provider == "etcd":
		// The provider's own Shutdown races with its keep-alive; removing
		// the member's key is what tells the others.
		if h, ok := n.sys.heads.(*etcdHeads); ok {
			key := etcdBaseKey + "/" + n.cfg.Name + "/" + n.cfg.Name + "@" + n.sys.as.ID
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if _, err := h.client.Delete(ctx, key); err != nil {
					n.sys.log.Warn().Err(err).Msg("could not leave the cluster in etcd; the others drop this node when its lease expires")
				}
			}()
		}
	default:
		go func() { _ = n.cl.Config.ClusterProvider.Shutdown(true) }()
	}
}

func (n *clusterNode) shutdown() {
	n.leave()
	if n.static != nil {
		n.static.stop()
	}
	if n.topoSub != nil {
		n.sys.as.EventStream.Unsubscribe(n.topoSub)
	}
	if n.cl.Remote != nil {
		n.cl.Remote.Shutdown(false)
	}
}

// Errors of a cluster admission.
var (
	// errMoving is an admission for a user whose room or edge on this
	// node is being re-homed: retried until it is gone.
	errMoving = errors.New("actors: the user's room is moving")
	// ErrUnavailable refuses a connection whose room's owner cannot be
	// reached or does not know yet that it is the owner.
	ErrUnavailable = errors.New("the user's room is not reachable")
)

// admitRetry is how long an admission keeps retrying while the members
// agree on the user's owner, or a room being re-homed is still closing.
const admitRetry = 3 * time.Second

// admit is Admit in cluster mode: the user's owner counts the connection.
func (n *clusterNode) admit(ctx context.Context, user string) (*Admission, error) {
	s := n.sys
	deadline := time.Now().Add(admitRetry)
	for wait := 10 * time.Millisecond; ; wait = min(wait*2, 200*time.Millisecond) {
		a, err := n.tryAdmit(ctx, user)
		if err == nil || errors.Is(err, ErrUserLimit) || errors.Is(err, ErrGlobalLimit) || errors.Is(err, ErrDraining) {
			return a, err
		}
		if time.Now().Add(wait).After(deadline) || s.draining.Load() {
			return nil, ErrUnavailable
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
}

func (n *clusterNode) tryAdmit(ctx context.Context, user string) (*Admission, error) {
	s := n.sys
	owner := n.owner(user)
	if owner == "" {
		return nil, ErrUnavailable
	}
	if owner == n.self {
		return s.admitLocal(ctx, &admit{user: user})
	}
	a, err := s.admitLocal(ctx, &admit{user: user, edge: owner})
	if err != nil {
		return nil, err
	}
	a.id = s.nextID.Add(1)
	a.owner = owner
	res, err := s.root.RequestFuture(endpointPID(owner),
		&clusterpb.Attach{User: user, Node: n.self, Conn: a.id, Edge: a.room.Id}, n.cfg.DeliverTimeout).Result()
	r, _ := res.(*clusterpb.AttachReply)
	if err == nil && r != nil && r.Result == clusterpb.AttachReply_OK {
		return a, nil
	}
	if err == nil {
		a.owner = "" // refused: nothing to detach
	}
	// A lost answer may hide an attach that happened: Cancel detaches it.
	a.Cancel()
	switch {
	case r != nil && r.Result == clusterpb.AttachReply_USER_LIMIT:
		return nil, ErrUserLimit
	case err != nil:
		return nil, fmt.Errorf("attach to %s: %w", owner, err)
	}
	return nil, ErrUnavailable
}

// successors are the members that may own user once this node has left,
// best first: the first that is alive will.
func (n *clusterNode) successors(user string) []string {
	ms := n.members.Load()
	if ms == nil {
		return nil
	}
	others := slices.DeleteFunc(slices.Clone(*ms), func(m string) bool { return m == n.self })
	var d xxhash.Digest
	score := func(m string) uint64 {
		d.Reset()
		_, _ = d.WriteString(m)
		_, _ = d.Write([]byte{0})
		_, _ = d.WriteString(user)
		return d.Sum64()
	}
	slices.SortFunc(others, func(a, b string) int {
		if sa, sb := score(a), score(b); sa != sb {
			if sa > sb {
				return -1
			}
			return 1
		}
		return 0
	})
	return others
}

// ready reports whether this node has joined the cluster.
func (n *clusterNode) ready() bool { return n.joined.Load() && !n.leaving.Load() }

// Messages of the cluster machinery inside a node.
type (
	// rehome asks the directory to re-home what this node no longer owns.
	rehome struct{}
	// moveOut closes a room's or edge's connections: its owner changed
	// to owner.
	moveOut struct{ owner string }
	// nodesLeft tells the endpoint that members have left.
	nodesLeft struct{ addrs []string }
	// barrier asks a proxy's writer to hand everything queued before it to
	// the edge, then answer on done.
	barrier struct {
		c    *conn
		done chan<- *conn
	}
)

// proxyKey names a remote connection: its edge and its id there.
type proxyKey struct {
	node string
	conn uint64
}

// endpoint is each node's cluster actor: it answers probes, attaches
// remote connections to rooms this node owns, and hands their messages to
// those rooms. It owns the proxies map.
type endpoint struct {
	n       *clusterNode
	proxies map[proxyKey]*conn
}

func (e *endpoint) Receive(ctx actor.Context) {
	n := e.n
	switch m := ctx.Message().(type) {
	case *clusterpb.Probe:
		ctx.Respond(&clusterpb.ProbeReply{Cluster: n.cfg.Name, MemberId: n.sys.as.ID, Leaving: n.leaving.Load()})
	case *clusterpb.Attach:
		ctx.Respond(&clusterpb.AttachReply{Result: e.attach(m)})
	case *clusterpb.Detach:
		key := proxyKey{m.Node, m.Conn}
		if c := e.proxies[key]; c != nil {
			delete(e.proxies, key)
			c.endProxy()
		}
	case *clusterpb.Inbound:
		c := e.proxies[proxyKey{m.Node, m.Conn}]
		if c == nil {
			// The room has moved or ended: the edge's connection has to
			// find its room again.
			ctx.Send(actor.NewPID(m.Node, m.Edge), &clusterpb.CloseConn{Conn: m.Conn, Reason: int32(CloseRehomed)})
			return
		}
		n.m.framesIn.Inc()
		n.m.bytesIn.Add(float64(len(m.Frame)))
		ctx.Send(c.room, inboundFrom(c, m))
	case *clusterpb.PeerClose:
		if c := e.proxies[proxyKey{m.Node, m.Conn}]; c != nil {
			ctx.Send(c.room, peerClose{c: c})
		}
	case *clusterpb.Leave:
		if n.static != nil && m.Cluster == n.cfg.Name {
			n.static.leaving(m.Node)
		}
	case *clusterpb.HeadsHandover:
		e.takeHeads(m)
		ctx.Respond(&clusterpb.HandoverDone{})
	case *nodesLeft:
		for key, c := range e.proxies {
			if slices.Contains(m.addrs, key.node) {
				delete(e.proxies, key)
				c.endProxy()
			}
		}
	}
}

// attach admits a remote connection into a room this node owns.
func (e *endpoint) attach(m *clusterpb.Attach) clusterpb.AttachReply_Result {
	n, s := e.n, e.n.sys
	if n.leaving.Load() || s.draining.Load() {
		return clusterpb.AttachReply_UNAVAILABLE
	}
	if n.owner(m.User) != n.self {
		return clusterpb.AttachReply_NOT_OWNER
	}
	key := proxyKey{m.Node, m.Conn}
	if e.proxies[key] != nil {
		return clusterpb.AttachReply_OK // a retried attach
	}
	reply := make(chan admitReply, 1)
	s.root.Send(s.directory, &admit{user: m.User, proxy: true, reply: reply})
	r := <-reply
	switch {
	case errors.Is(r.err, ErrUserLimit):
		return clusterpb.AttachReply_USER_LIMIT
	case r.err != nil:
		return clusterpb.AttachReply_UNAVAILABLE
	}
	now := s.cfg.Now()
	c := &conn{id: s.nextID.Add(1), user: m.User, room: r.room, roomDisp: r.disp, sys: s, opened: now.UnixNano(), proxy: true}
	c.sock = &remoteSocket{n: n, c: c, node: m.Node, conn: m.Conn, edge: actor.NewPID(m.Node, m.Edge)}
	c.lastRead.Store(now.UnixNano())
	s.conns.Add(1)
	if r.disp != nil {
		// The room will wait for this proxy's node on each push
		// (room.confirmRemote): not on a reader of this node.
		r.disp.waits.Store(true)
	}
	c.pid = s.root.Spawn(s.proxyProps)
	c.proc, c.roomProc = s.localProcess(c.pid), s.localProcess(c.room)
	s.root.Send(c.pid, attach{c: c})
	s.root.Send(r.room, &join{c: c})
	e.proxies[key] = c
	return clusterpb.AttachReply_OK
}

// endProxy ends a proxy whose edge connection is gone: for its writer, the
// reader has stopped.
func (c *conn) endProxy() {
	rs := c.sock.(*remoteSocket)
	rs.detached.Store(true)
	c.post(readerDone{})
}

// inboundFrom rebuilds on the owner the message an edge read.
func inboundFrom(c *conn, m *clusterpb.Inbound) *inbound {
	in := &inbound{c: c, typ: protocol.Type(m.Type), frame: m.Frame, read: time.Unix(0, m.ReadUnixNano),
		events: int(m.Events), lastTs: m.LastTs, requestID: m.RequestId, target: m.Target,
		hasTarget: m.HasTarget, hasMore: m.HasMore}
	if m.ErrorCode > 0 {
		in.err = &protocol.Error{Code: protocol.Code(m.ErrorCode), Message: m.ErrorMessage}
	}
	if m.Bind {
		in.bindAs = &identity{clientID: m.ClientId, sessionID: m.SessionId}
	}
	if st := m.Store; st != nil {
		if d := c.roomDisp; d != nil {
			d.waits.Store(true) // the room will wait for the head keeper
		}
		in.store = &storeIn{id: st.Id, firstParent: st.FirstParent}
		in.store.head.EventNumber, in.store.head.ClientID, in.store.head.SessionID = st.HeadEventNumber, st.HeadClientId, st.HeadSessionId
	}
	return in
}

// remoteSocket is a proxy's socket: its writes go to the connection's edge.
// Only the proxy's writer calls Write, Wait, CloseFrame and Shut. Unlike a
// local socket, a write waits for the edge's answer: proxies' writers run
// on goroutines of their own (System.proxyProps), and a room with proxies
// on one per run of its mailbox (endpoint.attach).
type remoteSocket struct {
	n        *clusterNode
	c        *conn
	node     string
	conn     uint64
	edge     *actor.PID  // the edge actor holding the connection
	closed   atomic.Bool // a CloseConn went to the edge
	detached atomic.Bool // the edge said the connection is gone
	ended    sync.Once
}

var errEdgeGone = errors.New("the connection is gone on its node")

// Write hands the frames to the edge and waits until they sit in the
// connection's send queue there: it writes all or fails.
func (r *remoteSocket) Write(frames [][]byte) (int, error) {
	if err := r.deliver(frames); err != nil {
		return 0, err
	}
	n := 0
	for _, f := range frames {
		n += len(f)
	}
	return n, nil
}

// Wait is never needed: Write takes everything or fails.
func (r *remoteSocket) Wait(_ bool, ready func(error)) { go ready(nil) }

// CloseFrame is nil: the edge writes the close frame for the proxy's
// reason when Shut asks it to close.
func (r *remoteSocket) CloseFrame(uint16, string) []byte { return nil }

// Shut asks the edge to close the connection for the proxy's reason, once
// every frame before has been delivered.
func (r *remoteSocket) Shut() { r.sendClose() }

func (r *remoteSocket) deliver(frames [][]byte) error {
	if len(frames) == 0 {
		return nil
	}
	if r.detached.Load() {
		return errEdgeGone
	}
	// One copy: the writer reuses its buffers once this returns, while
	// remoting may still be encoding after a timeout.
	total := 0
	for _, f := range frames {
		total += len(f)
	}
	buf := make([]byte, 0, total)
	msg := &clusterpb.Deliver{Conn: r.conn, Frames: make([][]byte, len(frames))}
	for i, f := range frames {
		buf = append(buf, f...)
		msg.Frames[i] = buf[len(buf)-len(f):]
	}
	r.n.m.framesOut.Add(float64(len(frames)))
	r.n.m.bytesOut.Add(float64(total))
	res, err := r.n.sys.root.RequestFuture(r.edge, msg, r.n.cfg.DeliverTimeout).Result()
	if err != nil {
		return fmt.Errorf("deliver to %s: %w", r.node, err)
	}
	if d, ok := res.(*clusterpb.Delivered); !ok || !d.Ok {
		return errEdgeGone
	}
	return nil
}

func (r *remoteSocket) sendClose() {
	if r.detached.Load() || r.closed.Swap(true) {
		return
	}
	reason := r.c.closeReason()
	if reason == closeNone {
		reason = CloseRehomed
	}
	r.n.sys.root.Send(r.edge, &clusterpb.CloseConn{Conn: r.conn, Reason: int32(reason)})
}

// Close releases the proxy: the edge is told to close the connection if it
// has not been, and the writer sees its reader stop.
func (r *remoteSocket) Close() error {
	r.sendClose()
	r.ended.Do(func() { r.c.post(readerDone{}) })
	return nil
}

func (r *remoteSocket) RemoteAddr() string { return "node " + r.node }

// edgeReason is how an edge closes its connection for the reason its
// proxy was closed with. Reasons that end the room rather than the
// connection become 1012: the client reconnects and finds the room again.
func edgeReason(r CloseReason) CloseReason {
	switch r {
	case CloseGoingAway, ClosePeerGone, CloseInternal, CloseLiveness, closeNone:
		return CloseRehomed
	}
	return r
}
