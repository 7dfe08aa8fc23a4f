package actors

import (
	"errors"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/cluster"

	"github.com/livestore-relay/livestore-relay/actors/clusterpb"
)

// staticProvider is the membership of a fixed seed list: every
// ProbeInterval this node asks each seed's endpoint whether it is a live
// member of the same cluster. A seed that answers is a member; one that
// has not answered ProbeFailures times in a row is not. Each node probes
// on its own, so views differ for at most a probe round or two; a room
// never accepts traffic on a node that does not own it in its own view.
type staticProvider struct {
	n     *clusterNode
	seeds []string // without this node
	quit  chan struct{}
	done  chan struct{}
	once  sync.Once
	// Owned by run.
	fails   map[string]int
	members map[string]*cluster.Member
	// dropped counts how often each seed left the member list. It is part
	// of the member id given to protoactor, whose member list never lets
	// an id that left come back: a seed that answers again after it was
	// dropped (a network cut that healed) rejoins under a new id.
	dropped map[string]int
	// left receives the seeds that said they are draining.
	left chan string
}

func newStaticProvider(n *clusterNode) *staticProvider {
	p := &staticProvider{n: n, quit: make(chan struct{}), done: make(chan struct{}),
		fails: make(map[string]int), members: make(map[string]*cluster.Member), dropped: make(map[string]int), left: make(chan string, 64)}
	for _, s := range n.cfg.Peers {
		if s != "" && s != n.self && !slices.Contains(p.seeds, s) {
			p.seeds = append(p.seeds, s)
		}
	}
	return p
}

func (p *staticProvider) StartMember(c *cluster.Cluster) error {
	go p.run(c)
	return nil
}

func (p *staticProvider) StartClient(*cluster.Cluster) error {
	return errors.New("the static provider only starts members")
}

func (p *staticProvider) Shutdown(bool) error {
	p.stop()
	return nil
}

func (p *staticProvider) stop() {
	p.once.Do(func() { close(p.quit) })
}

func (p *staticProvider) run(c *cluster.Cluster) {
	defer close(p.done)
	t := time.NewTicker(p.n.cfg.ProbeInterval)
	defer t.Stop()
	for {
		p.round(c)
		select {
		case <-p.quit:
			return
		case <-t.C:
		case seed := <-p.left:
			p.drop(seed)
		}
	}
}

// leaving is told that seed is draining; the next round, which it starts
// at once, leaves it out.
func (p *staticProvider) leaving(seed string) {
	select {
	case p.left <- seed:
	default: // full: the probes find out
	}
}

// round probes every seed at once and publishes the members.
func (p *staticProvider) round(c *cluster.Cluster) {
	n := p.n
	replies := make([]*clusterpb.ProbeReply, len(p.seeds))
	var wg sync.WaitGroup
	timeout := 2 * n.cfg.ProbeInterval
	for i, seed := range p.seeds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if p.members[seed] == nil && !listening(seed, timeout) {
				// Not up yet: a remote message now would stall remoting's
				// connection to it for seconds of retries.
				return
			}
			res, err := n.sys.root.RequestFuture(endpointPID(seed), &clusterpb.Probe{Cluster: n.cfg.Name}, timeout).Result()
			if r, ok := res.(*clusterpb.ProbeReply); ok && err == nil {
				replies[i] = r
			}
		}()
	}
	wg.Wait()
	for i, seed := range p.seeds {
		r := replies[i]
		switch {
		case r != nil && r.Cluster == n.cfg.Name && !r.Leaving:
			p.fails[seed] = 0
			id := memberID(r.MemberId, p.dropped[seed])
			if m := p.members[seed]; m == nil || m.Id != id {
				p.members[seed] = member(seed, id)
			}
		case r != nil:
			p.drop(seed) // another cluster, or leaving: out at once
		default:
			p.fails[seed]++
			if p.fails[seed] >= n.cfg.ProbeFailures {
				p.drop(seed)
			}
		}
	}
	list := make([]*cluster.Member, 0, len(p.members)+1)
	if !n.leaving.Load() {
		list = append(list, member(n.self, memberID(c.ActorSystem.ID, 0)))
	}
	for _, m := range p.members {
		list = append(list, m)
	}
	c.MemberList.UpdateClusterTopology(list)
}

func (p *staticProvider) drop(seed string) {
	if p.members[seed] != nil {
		delete(p.members, seed)
		p.dropped[seed]++
	}
}

// memberID is the id of a member incarnation: its actor system's id and
// how often this node has seen it leave.
func memberID(system string, dropped int) string { return system + "#" + strconv.Itoa(dropped) }

// listening reports whether addr accepts TCP connections.
func listening(addr string, timeout time.Duration) bool {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

func member(addr, id string) *cluster.Member {
	host, portText, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portText)
	return &cluster.Member{Id: id, Host: host, Port: int32(port)}
}
