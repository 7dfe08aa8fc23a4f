// Package cluster tests several relay processes serving as one: each test
// starts real relay binaries on 127.0.0.1 with the static provider and
// spreads each user's devices over them.
package cluster

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/livestore-relay/livestore-relay/auth"
	"github.com/livestore-relay/livestore-relay/test/relaytest"
)

// node is one relay process of a test cluster.
type node struct {
	*relaytest.Server
	proc *relaytest.Process
	addr string // its cluster address
}

// freeAddr finds a free port on 127.0.0.1 for a cluster address.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func secretEnv() []string {
	return relaytest.CleanEnv("RELAY_JWT_SECRET=" + string(relaytest.Secret))
}

// execNode starts one relay of the cluster whose seed list is peers, and
// returns at once; listen waits until it serves.
func execNode(t testing.TB, addr string, peers []string, extra ...string) *node {
	t.Helper()
	args := append([]string{"--addr", "127.0.0.1:0", "--cluster-addr", addr, "--cluster-peers", strings.Join(peers, ","),
		"--drain-timeout", "3s"}, extra...)
	return &node{proc: relaytest.Exec(t, secretEnv(), args...), addr: addr}
}

// listen waits until the node serves; it is stopped with SIGTERM, and must
// exit 0, when the test ends.
func (nd *node) listen(t testing.TB) *node {
	t.Helper()
	nd.Server = nd.proc.Server(nd.proc.Listening())
	t.Cleanup(func() { nd.Stop(t) })
	return nd
}

// startNode runs one relay of the cluster whose seed list is peers.
func startNode(t testing.TB, addr string, peers []string, extra ...string) *node {
	t.Helper()
	return execNode(t, addr, peers, extra...).listen(t)
}

// startCluster runs n relays that all know each other, and waits until
// every one sees all n as members and is ready.
func startCluster(t testing.TB, n int, extra ...string) []*node {
	t.Helper()
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = freeAddr(t)
	}
	nodes := make([]*node, n)
	for i := range nodes {
		nodes[i] = execNode(t, addrs[i], addrs, extra...)
	}
	for _, nd := range nodes {
		nd.listen(t)
	}
	waitMembers(t, nodes, n)
	return nodes
}

// waitMembers waits until every node sees want members and is ready.
func waitMembers(t testing.TB, nodes []*node, want int) {
	t.Helper()
	for _, nd := range nodes {
		relaytest.Eventually(t, 10*time.Second, fmt.Sprintf("%s to see %d members", nd.addr, want), func() bool {
			return nd.Metric(t, "livestore_relay_cluster_members") == float64(want) && nd.ready(t)
		})
	}
}

func (nd *node) ready(t testing.TB) bool {
	resp, err := http.Get(nd.HTTP + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// kill ends the node with SIGKILL.
func (nd *node) kill(t testing.TB) {
	t.Helper()
	nd.proc.Signal(syscall.SIGKILL)
	<-nd.proc.Exited()
	nd.StopAsync() // nothing left to stop
}

// roomsOwned is how many rooms the node owns.
func (nd *node) roomsOwned(t testing.TB) float64 {
	return nd.Metric(t, "livestore_relay_cluster_rooms_owned")
}

// owner is the node that owns user's room, found by the rooms each node
// owns while user is the only user connected.
func ownerOf(t testing.TB, nodes []*node) int {
	t.Helper()
	owner := -1
	relaytest.Eventually(t, 5*time.Second, "one node to own the room", func() bool {
		owner = -1
		for i, nd := range nodes {
			if nd.roomsOwned(t) == 1 {
				if owner >= 0 {
					return false
				}
				owner = i
			}
		}
		return owner >= 0
	})
	return owner
}

// joinStore joins d to store announcing head n (its own ids when n > 0)
// and returns the answer.
func joinStore(d *relaytest.Client, store string, n int) relaytest.Msg {
	head := map[string]any{"eventNumber": n}
	if n > 0 {
		head["clientId"], head["sessionId"] = d.ClientID, d.SessionID
	}
	d.Send(d.Envelope("pull", map[string]any{"storeId": store, "head": head}))
	return d.Recv()
}

// storePush pushes one event numbered n on parent n-1 to store.
func storePush(d *relaytest.Client, store string, n int) []byte {
	e := d.Event(n)
	e["eventNumber"], e["parentEventNumber"] = n, n-1
	return d.Send(d.Envelope("push", map[string]any{"storeId": store, "events": []any{e}}))
}

// headOf is payload.head.eventNumber of a store's pull_response or error.
func headOf(t testing.TB, m relaytest.Msg) int {
	t.Helper()
	var h struct {
		EventNumber int `json:"eventNumber"`
	}
	m.Field(t, "head", &h)
	return h.EventNumber
}

func TestClusterNodesJoinAndReportReady(t *testing.T) {
	nodes := startCluster(t, 3)
	for _, nd := range nodes {
		if resp, _ := nd.Get(t, "/readyz"); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: /readyz %d, want 200", nd.addr, resp.StatusCode)
		}
	}
}

func TestClusterRelaysBytesAcrossNodesAndAcksAfterEveryRecipient(t *testing.T) {
	nodes := startCluster(t, 3)
	a := nodes[0].Dial(t, "alice", "laptop")
	b := nodes[1].Dial(t, "alice", "phone")
	c := nodes[2].Dial(t, "alice", "tablet")
	a.Bind()
	b.Bind()
	c.Bind()
	// Another user on the same nodes sees nothing of alice.
	bob := nodes[1].Dial(t, "bob", "laptop")
	bob.Bind()

	for _, sender := range []*relaytest.Client{a, b, c} {
		sent := sender.Push(sender.Event(map[string]any{"from": sender.ClientID, "x": "ünïcödé"}))
		ack := sender.Expect("ack")
		var n int
		ack.Field(t, "receivedCount", &n)
		if n != 1 {
			t.Fatalf("ack %s, want receivedCount 1", ack.Raw)
		}
		for _, r := range []*relaytest.Client{a, b, c} {
			if r == sender {
				continue
			}
			got := r.Expect("push")
			if !bytes.Equal(got.Raw, sent) {
				t.Fatalf("%s got\n%s\nwant the bytes sent\n%s", r.ClientID, got.Raw, sent)
			}
		}
	}
	bob.ExpectQuiet()
	a.ExpectQuiet()
	b.ExpectQuiet()
	c.ExpectQuiet()
}

func TestClusterKeepsEachSendersOrder(t *testing.T) {
	nodes := startCluster(t, 3)
	a := nodes[0].Dial(t, "carol", "a")
	b := nodes[1].Dial(t, "carol", "b")
	c := nodes[2].Dial(t, "carol", "c")
	a.Bind()
	b.Bind()
	c.Bind()
	const n = 100
	var sentA, sentB [][]byte
	for i := range n {
		sentA = append(sentA, a.Push(a.Event(i)))
		sentB = append(sentB, b.Push(b.Event(i)))
	}
	// Each sender reads its n acks among the other's n pushes.
	for _, d := range []*relaytest.Client{a, b} {
		acks := 0
		for range 2 * n {
			if d.Recv().Type == "ack" {
				acks++
			}
		}
		if acks != n {
			t.Fatalf("%s: %d acks, want %d", d.ClientID, acks, n)
		}
	}
	var fromA, fromB [][]byte
	for range 2 * n {
		m := c.Recv()
		if m.Type != "push" {
			t.Fatalf("c got %s, want a push", m.Raw)
		}
		if m.ClientID == "a" {
			fromA = append(fromA, m.Raw)
		} else {
			fromB = append(fromB, m.Raw)
		}
	}
	for i := range n {
		if !bytes.Equal(fromA[i], sentA[i]) || !bytes.Equal(fromB[i], sentB[i]) {
			t.Fatalf("push %d arrived out of order or changed", i)
		}
	}
}

func TestClusterOnlinePeersSpanTheCluster(t *testing.T) {
	nodes := startCluster(t, 3)
	a := nodes[0].Dial(t, "dave", "a")
	b := nodes[1].Dial(t, "dave", "b")
	c := nodes[2].Dial(t, "dave", "c")
	b.Bind()
	c.Bind()
	got := a.Bind().OnlinePeers
	if !slices.Equal(got, []string{"b", "c"}) {
		t.Fatalf("onlinePeers %v, want [b c]", got)
	}
	c.Close()
	relaytest.Eventually(t, 5*time.Second, "c to leave the room", func() bool {
		return slices.Equal(a.Bind().OnlinePeers, []string{"b"})
	})
}

func TestClusterRoutesPeerPullAcrossNodes(t *testing.T) {
	nodes := startCluster(t, 3)
	a := nodes[0].Dial(t, "erin", "a")
	b := nodes[1].Dial(t, "erin", "b")
	c := nodes[2].Dial(t, "erin", "c")
	a.Bind()
	b.Bind()
	c.Bind()
	req := a.Send(a.Envelope("peer_pull", map[string]any{"requestId": "r1", "sinceTimestamp": 0, "targetClientId": "c"}))
	got := c.Expect("peer_pull")
	if !bytes.Equal(got.Raw, req) {
		t.Fatalf("c got %s, want %s", got.Raw, req)
	}
	resp := c.Send(c.Envelope("peer_pull_response", map[string]any{"requestId": "r1", "events": []any{c.Event(1)}, "hasMore": false}))
	if back := a.Expect("peer_pull_response"); !bytes.Equal(back.Raw, resp) {
		t.Fatalf("a got %s, want %s", back.Raw, resp)
	}
	// b was not asked: its answer is an error to b.
	b.Send(b.Envelope("peer_pull_response", map[string]any{"requestId": "r1", "events": []any{}, "hasMore": false}))
	b.ExpectError("unknown_request")
	b.ExpectQuiet()
}

func TestClusterReplacesASessionOnAnotherNodeWith4002(t *testing.T) {
	nodes := startCluster(t, 3)
	old := nodes[0].Dial(t, "frank", "laptop")
	old.Bind()
	newer := nodes[1].Dial(t, "frank", "laptop")
	newer.SessionID = old.SessionID
	newer.Bind()
	old.ExpectClose(4002)
	// And the other way round.
	third := nodes[2].Dial(t, "frank", "laptop")
	third.SessionID = old.SessionID
	third.Bind()
	newer.ExpectClose(4002)
}

func TestClusterCountsTheUserLimitOverTheCluster(t *testing.T) {
	nodes := startCluster(t, 3, "--max-conns-per-user", "2")
	nodes[0].Dial(t, "gina", "a").Bind()
	nodes[1].Dial(t, "gina", "b").Bind()
	_, resp, err := nodes[2].DialWith(t, nodes[2].URL+"?token="+relaytest.Token(t, "gina"), nil)
	if err == nil || relaytest.StatusOf(resp) != http.StatusTooManyRequests {
		t.Fatalf("third connection: %v, status %d, want 429", err, relaytest.StatusOf(resp))
	}
}

func TestClusterSequencedStoreAcrossNodes(t *testing.T) {
	nodes := startCluster(t, 3)
	a := nodes[0].Dial(t, "hank", "a")
	b := nodes[1].Dial(t, "hank", "b")
	join := func(d *relaytest.Client, head map[string]any) relaytest.Msg {
		d.Send(d.Envelope("pull", map[string]any{"storeId": "s1", "head": head}))
		return d.Recv()
	}
	if m := join(a, map[string]any{"eventNumber": 0}); m.Type != "pull_response" {
		t.Fatalf("a join: %s", m.Raw)
	}
	if m := join(b, map[string]any{"eventNumber": 0}); m.Type != "pull_response" {
		t.Fatalf("b join: %s", m.Raw)
	}
	ev := func(d *relaytest.Client, n, parent int) map[string]any {
		e := d.Event(n)
		e["eventNumber"], e["parentEventNumber"] = n, parent
		return e
	}
	push := a.Send(a.Envelope("push", map[string]any{"storeId": "s1", "events": []any{ev(a, 1, 0)}}))
	a.Expect("ack")
	if got := b.Expect("push"); !bytes.Equal(got.Raw, push) {
		t.Fatalf("b got %s, want %s", got.Raw, push)
	}
	// b pushes on a stale head: the owner's head is 1.
	b.Send(b.Envelope("push", map[string]any{"storeId": "s1", "events": []any{ev(b, 1, 0)}}))
	b.ExpectError("head_mismatch")
	b.Send(b.Envelope("push", map[string]any{"storeId": "s1", "events": []any{ev(b, 2, 1)}}))
	b.Expect("ack")
	a.Expect("push")
}

func TestClusterNodeKillRehomesItsRooms(t *testing.T) {
	nodes := startCluster(t, 3)
	a := nodes[0].Dial(t, "ivan", "a")
	b := nodes[1].Dial(t, "ivan", "b")
	c := nodes[2].Dial(t, "ivan", "c")
	a.Bind()
	b.Bind()
	c.Bind()
	owner := ownerOf(t, nodes)
	var alive []*node
	for i, nd := range nodes {
		if i != owner {
			alive = append(alive, nd)
		}
	}
	// Other users, each with a device on both nodes that will survive:
	// those whose room is not on the killed node must not notice the kill.
	const users = 12
	type pair struct{ x, y *relaytest.Client }
	pairs := make([]pair, users)
	for i := range pairs {
		u := fmt.Sprintf("other-%d", i)
		pairs[i] = pair{alive[0].Dial(t, u, "x"), alive[1].Dial(t, u, "y")}
		pairs[i].x.Bind()
		pairs[i].y.Bind()
	}
	var survivorsOwn float64
	relaytest.Eventually(t, 5*time.Second, "every room placed", func() bool {
		survivorsOwn = alive[0].roomsOwned(t) + alive[1].roomsOwned(t)
		return survivorsOwn+nodes[owner].roomsOwned(t) == users+1
	})

	start := time.Now()
	nodes[owner].kill(t)
	var devices []*relaytest.Client
	for i, d := range []*relaytest.Client{a, b, c} {
		if i == owner {
			continue
		}
		d.ExpectClose(websocket.StatusServiceRestart)
		devices = append(devices, d)
	}
	waitMembers(t, alive, 2)
	// The devices reconnect and find each other in the room's new home.
	x := alive[0].Dial(t, "ivan", devices[0].ClientID)
	y := alive[1].Dial(t, "ivan", devices[1].ClientID)
	x.Bind()
	if got := y.Bind().OnlinePeers; !slices.Equal(got, []string{x.ClientID}) {
		t.Fatalf("onlinePeers %v, want [%s]", got, x.ClientID)
	}
	sent := x.Push(x.Event(1))
	x.Expect("ack")
	if got := y.Expect("push"); !bytes.Equal(got.Raw, sent) {
		t.Fatalf("after the kill: got %s", got.Raw)
	}
	t.Logf("room back on a surviving node %v after the kill", time.Since(start))

	moved := 0
	for i, p := range pairs {
		p.x.Send(p.x.Envelope("pull", map[string]any{}))
		m, err := p.x.TryRecv(relaytest.Timeout)
		if err != nil {
			// Its room was on the killed node.
			if got := websocket.CloseStatus(err); got != websocket.StatusServiceRestart {
				t.Fatalf("user %d: x ended with %v, want 1012", i, err)
			}
			p.y.ExpectClose(websocket.StatusServiceRestart)
			moved++
			continue
		}
		if m.Type != "pull_response" {
			t.Fatalf("user %d: got %s", i, m.Raw)
		}
		sent := p.x.Push(p.x.Event(i))
		p.x.Expect("ack")
		if got := p.y.Expect("push"); !bytes.Equal(got.Raw, sent) {
			t.Fatalf("user %d: y got %s", i, got.Raw)
		}
	}
	if want := users - int(survivorsOwn); moved != want {
		t.Fatalf("%d users lost their connections, want the %d whose room was on the killed node", moved, want)
	}
}

func TestClusterJoinMovesOnlyTheRoomsTheNewNodeOwns(t *testing.T) {
	addrs := []string{freeAddr(t), freeAddr(t), freeAddr(t)}
	nodes := []*node{execNode(t, addrs[0], addrs), execNode(t, addrs[1], addrs)}
	for _, nd := range nodes {
		nd.listen(t)
	}
	waitMembers(t, nodes, 2)
	const users = 60
	type pair struct{ x, y *relaytest.Client }
	pairs := make([]pair, users)
	for i := range pairs {
		u := fmt.Sprintf("user-%d", i)
		p := pair{nodes[0].Dial(t, u, "x"), nodes[1].Dial(t, u, "y")}
		joinStore(p.x, "s", 0)
		joinStore(p.y, "s", 0)
		storePush(p.x, "s", 1)
		p.x.Expect("ack")
		p.y.Expect("push")
		pairs[i] = p
	}
	joiner := startNode(t, addrs[2], addrs)
	all := append(nodes, joiner)
	waitMembers(t, all, 3)
	rehomed := func() (n0, n1 float64) {
		return nodes[0].Metric(t, "livestore_relay_cluster_rehomed_rooms_total"),
			nodes[1].Metric(t, "livestore_relay_cluster_rehomed_rooms_total")
	}
	// Both old nodes have re-homed (each owned rooms that the joiner now
	// owns) and released the moved rooms.
	relaytest.Eventually(t, 5*time.Second, "re-homing", func() bool {
		r0, r1 := rehomed()
		return r0 > 0 && r1 > 0 && nodes[0].roomsOwned(t)+nodes[1].roomsOwned(t)+r0+r1 == users
	})
	r0, r1 := rehomed()
	moved := 0
	for i, p := range pairs {
		p.x.Send(p.x.Envelope("pull", map[string]any{}))
		m, err := p.x.TryRecv(relaytest.Timeout)
		if err == nil {
			// Not moved: still connected, still relaying.
			if m.Type != "pull_response" {
				t.Fatalf("pair %d: got %s", i, m.Raw)
			}
			sent := p.x.Push(p.x.Event(i))
			p.x.Expect("ack")
			if got := p.y.Expect("push"); !bytes.Equal(got.Raw, sent) {
				t.Fatalf("pair %d: y got %s", i, got.Raw)
			}
			continue
		}
		if got := websocket.CloseStatus(err); got != websocket.StatusServiceRestart {
			t.Fatalf("pair %d: x ended with %v, want 1012", i, err)
		}
		p.y.ExpectClose(websocket.StatusServiceRestart)
		moved++
		// The devices reconnect, to the same nodes, into the room's new home.
		u := fmt.Sprintf("user-%d", i)
		x, y := nodes[0].Dial(t, u, "x"), nodes[1].Dial(t, u, "y")
		x.Bind()
		// The store's head moved with the room: a device that announces a
		// stale head learns the relay's, and cannot fork from the old one.
		if m := joinStore(y, "s", 0); m.Type != "pull_response" || headOf(t, m) != 1 {
			t.Fatalf("moved pair %d: join answered %s, want the head 1 handed over", i, m.Raw)
		}
		storePush(y, "s", 1)
		y.ExpectError("head_mismatch")
		sent := x.Push(x.Event(i))
		x.Expect("ack")
		if got := y.Expect("push"); !bytes.Equal(got.Raw, sent) {
			t.Fatalf("moved pair %d: y got %s", i, got.Raw)
		}
	}
	if float64(moved) != r0+r1 {
		t.Fatalf("%d pairs were closed with 1012, but %v rooms were re-homed", moved, r0+r1)
	}
	relaytest.Eventually(t, 5*time.Second, "the joiner to own the moved rooms", func() bool {
		return joiner.roomsOwned(t) == float64(moved) && nodes[0].roomsOwned(t)+nodes[1].roomsOwned(t) == float64(users-moved)
	})
	t.Logf("a third node joining two: %d of %d rooms moved", moved, users)
}

func TestClusterDrainOfOneNodeLeavesTheOthersServing(t *testing.T) {
	nodes := startCluster(t, 3)
	devs := []*relaytest.Client{nodes[0].Dial(t, "jill", "a"), nodes[1].Dial(t, "jill", "b"), nodes[2].Dial(t, "jill", "c")}
	for _, d := range devs {
		d.Bind()
	}
	owner := ownerOf(t, nodes)
	// Drain a node that does not own the room: only its own socket closes.
	other := (owner + 1) % 3
	third := 3 - owner - other
	done := nodes[other].StopAsync()
	devs[other].ExpectClose(websocket.StatusGoingAway)
	if err := <-done; err != nil {
		t.Fatalf("drained node: %v", err)
	}
	relaytest.Eventually(t, 5*time.Second, "the drained node's device to leave the room", func() bool {
		return slices.Equal(devs[owner].Bind().OnlinePeers, []string{devs[third].ClientID})
	})
	sent := devs[owner].Push(devs[owner].Event(1))
	devs[owner].Expect("ack")
	if got := devs[third].Expect("push"); !bytes.Equal(got.Raw, sent) {
		t.Fatalf("got %s", got.Raw)
	}
	// A store with a head, which must follow the room when its node drains.
	joinStore(devs[owner], "s", 0)
	joinStore(devs[third], "s", 0)
	storePush(devs[owner], "s", 1)
	devs[owner].Expect("ack")
	devs[third].Expect("push")
	// Drain the owner: its socket gets 1001, the room's other device 1012,
	// and that device finds the room again on the node that is left.
	done = nodes[owner].StopAsync()
	devs[owner].ExpectClose(websocket.StatusGoingAway)
	devs[third].ExpectClose(websocket.StatusServiceRestart)
	if err := <-done; err != nil {
		t.Fatalf("drained owner: %v", err)
	}
	waitMembers(t, []*node{nodes[third]}, 1)
	d := nodes[third].Dial(t, "jill", "c")
	d.Bind()
	d.Push(d.Event(2))
	d.Expect("ack")
	if m := joinStore(d, "s", 0); m.Type != "pull_response" || headOf(t, m) != 1 {
		t.Fatalf("join after the drain answered %s, want the head 1 handed over", m.Raw)
	}
}

func TestClusterAcksOnlyWhatEveryRemainingRecipientHasWhileANodeDies(t *testing.T) {
	nodes := startCluster(t, 3, "--rate", "100000", "--rate-burst", "100000")
	probe := nodes[0].Dial(t, "lena", "probe")
	probe.Bind()
	owner := ownerOf(t, nodes)
	stays, dies := (owner+1)%3, (owner+2)%3
	s := nodes[owner].Dial(t, "lena", "sender")
	r1 := nodes[stays].Dial(t, "lena", "stays")
	r2 := nodes[dies].Dial(t, "lena", "dies")
	probe.Close()
	s.Bind()
	r1.Bind()
	r2.Bind()
	const n = 300
	sent := make([][]byte, n)
	for i := range n {
		sent[i] = s.Push(s.Event(i))
		if i == n/3 {
			nodes[dies].kill(t)
		}
	}
	// Every push is acked (the dead node's proxy is dropped, not waited
	// for), and the recipient that stayed has each acked push, in order.
	for range n {
		s.Expect("ack")
	}
	for i := range n {
		if got := r1.Expect("push"); !bytes.Equal(got.Raw, sent[i]) {
			t.Fatalf("push %d: got %s", i, got.Raw)
		}
	}
	relaytest.Eventually(t, 10*time.Second, "the dead node's device to leave the room", func() bool {
		return slices.Equal(s.Bind().OnlinePeers, []string{"stays"})
	})
}

func TestClusterFlagsAreChecked(t *testing.T) {
	cases := [][]string{
		{"--cluster-addr", "no-port"},
		{"--cluster-addr", "0.0.0.0:7000"},
		{"--cluster-addr", "127.0.0.1:7000", "--cluster-provider", "zookeeper"},
		{"--cluster-addr", "127.0.0.1:7000", "--cluster-provider", "etcd"},
		{"--cluster-addr", "127.0.0.1:7000", "--cluster-peers", "a,b:1"},
		{"--cluster-addr", "127.0.0.1:7000", "--cluster-name", ""},
	}
	for _, args := range cases {
		code, _, stderr := relaytest.Run(t, secretEnv(), append([]string{"--addr", "127.0.0.1:0"}, args...)...)
		if code != 2 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.Contains(stderr, "--cluster-") {
			t.Errorf("%v: exit %d, stderr %q; want 2 and one line naming the flag", args, code, stderr)
		}
	}
}

func TestClusterNodesOfDifferentNamesNeverMix(t *testing.T) {
	addrs := []string{freeAddr(t), freeAddr(t)}
	a := execNode(t, addrs[0], addrs, "--cluster-name", "blue")
	b := execNode(t, addrs[1], addrs, "--cluster-name", "green")
	a.listen(t)
	b.listen(t)
	waitMembers(t, []*node{a, b}, 1)
	x := a.Dial(t, "mia", "x")
	y := b.Dial(t, "mia", "y")
	x.Bind()
	if got := y.Bind().OnlinePeers; len(got) != 0 {
		t.Fatalf("onlinePeers %v across clusters of different names, want none", got)
	}
	if a.Metric(t, "livestore_relay_cluster_members") != 1 || b.Metric(t, "livestore_relay_cluster_members") != 1 {
		t.Fatal("nodes of different cluster names became members of each other")
	}
}

func TestClusterStalledReaderOnAnotherNodeIsClosedAsSlowConsumer(t *testing.T) {
	nodes := startCluster(t, 3, "--rate", "100000", "--rate-burst", "100000",
		"--send-queue-messages", "64", "--send-queue-bytes", "1048576", "--write-timeout", "1m")
	probe := nodes[0].Dial(t, "nora", "probe")
	probe.Bind()
	owner := ownerOf(t, nodes)
	slowNode, keeper := nodes[(owner+1)%3], nodes[(owner+2)%3]
	stalled := slowNode.DialRaw(t, "nora", "stalled")
	stalled.Bind()
	sender := nodes[owner].Dial(t, "nora", "sender")
	reader := keeper.Dial(t, "nora", "reader")
	probe.Close()
	sender.Bind()
	reader.Bind()
	// The reader keeps up; the stalled device reads nothing.
	got := make(chan []byte, 8192)
	go func() {
		for {
			m, err := reader.TryRecv(time.Minute)
			if err != nil {
				close(got)
				return
			}
			got <- m.Raw
		}
	}()
	pad := strings.Repeat("x", 32<<10)
	const slow = "livestore_relay_slow_consumer_disconnects_total"
	var sent [][]byte
	for len(sent) < 4096 && (len(sent)%16 != 0 || slowNode.Metric(t, slow) == 0) {
		sent = append(sent, sender.Push(sender.Event(map[string]any{"n": len(sent), "pad": pad})))
		sender.Expect("ack")
	}
	if slowNode.Metric(t, slow) == 0 {
		t.Fatalf("stalled device not closed after %d pushes", len(sent))
	}
	if c := stalled.ReadUntilClose(); c.Code != 4003 {
		t.Fatalf("stalled device ended with %d (%v), want 4003", c.Code, c.Err)
	}
	for i, want := range sent {
		if b, ok := <-got; !ok || !bytes.Equal(b, want) {
			t.Fatalf("reader: push %d missing or changed", i)
		}
	}
	relaytest.Eventually(t, 5*time.Second, "the stalled device to leave the room", func() bool {
		return slices.Equal(sender.Bind().OnlinePeers, []string{"reader"})
	})
}

func TestClusterClosesAnExpiredTokenOnAnotherNodeWith4001(t *testing.T) {
	nodes := startCluster(t, 3, "--jwt-leeway", "0s", "--ping-interval", "1s")
	probe := nodes[0].Dial(t, "olga", "probe")
	probe.Bind()
	owner := ownerOf(t, nodes)
	other := nodes[(owner+1)%3]
	tok, err := auth.Mint(relaytest.Secret, "olga", 2*time.Second, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	short := other.DialDevice(t, other.URL+"?token="+tok, nil, "short")
	short.Bind()
	short.ExpectClose(4001)
	relaytest.Eventually(t, 5*time.Second, "the expired device to leave the room", func() bool {
		return len(probe.Bind().OnlinePeers) == 0
	})
}

func TestClusterNodeThatWasCutOffRejoins(t *testing.T) {
	nodes := startCluster(t, 3)
	// A frozen process answers nothing, as if the network were cut.
	nodes[2].proc.Signal(syscall.SIGSTOP)
	waitMembers(t, nodes[:2], 2)
	nodes[2].proc.Signal(syscall.SIGCONT)
	waitMembers(t, nodes, 3)
	a := nodes[0].Dial(t, "pia", "a")
	c := nodes[2].Dial(t, "pia", "c")
	a.Bind()
	c.Bind()
	sent := a.Push(a.Event(1))
	a.Expect("ack")
	if got := c.Expect("push"); !bytes.Equal(got.Raw, sent) {
		t.Fatalf("c got %s", got.Raw)
	}
}

func TestClusterAnswersErrorsAndServerRepliesAcrossNodesInOrder(t *testing.T) {
	nodes := startCluster(t, 3)
	probe := nodes[0].Dial(t, "quinn", "probe")
	probe.Bind()
	owner := ownerOf(t, nodes)
	d := nodes[(owner+1)%3].Dial(t, "quinn", "far") // its room is on another node
	other := nodes[(owner+2)%3].Dial(t, "quinn", "other")
	d.Bind()
	other.Bind()

	ctx, cancel := context.WithTimeout(context.Background(), relaytest.Timeout)
	defer cancel()
	if err := d.Conn.Write(ctx, websocket.MessageBinary, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	d.Send(d.Envelope("subscribe", map[string]any{}))
	mismatch := d.Envelope("pull", map[string]any{})
	mismatch["clientId"] = "someone-else"
	d.Send(mismatch)
	d.Push()
	d.Send(d.Envelope("peer_pull", map[string]any{"requestId": "r", "sinceTimestamp": 0, "targetClientId": "nobody"}))
	d.Send(d.Envelope("pull", map[string]any{"storeId": "s", "head": map[string]any{"eventNumber": 3, "clientId": "x", "sessionId": "y"}}))
	d.Send(d.Envelope("pull", map[string]any{"storeId": "s", "head": map[string]any{"eventNumber": 3, "clientId": "x", "sessionId": "z"}}))

	// Answers come back in the order of the messages they answer.
	d.ExpectError("invalid_message")
	d.ExpectError("unsupported_type")
	d.ExpectError("client_mismatch")
	ack := d.Expect("ack")
	var n int
	ack.Field(t, "receivedCount", &n)
	if n != 0 {
		t.Fatalf("empty push acked with %s", ack.Raw)
	}
	if m := d.Expect("peer_pull_response"); m.ClientID != "server" {
		t.Fatalf("peer_pull with nobody to ask answered by %s", m.Raw)
	}
	if m := d.Expect("pull_response"); headOf(t, m) != 3 {
		t.Fatalf("join answered %s", m.Raw)
	}
	if m := d.ExpectError("store_conflict"); headOf(t, m) != 3 {
		t.Fatalf("conflict answered %s", m.Raw)
	}
	other.ExpectQuiet()
	d.ExpectQuiet()
}
