package cluster

import (
	"bytes"
	"net/http"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/livestore-relay/livestore-relay/test/relaytest"
)

// startEtcd runs a single-member etcd on free ports for the test and
// returns its client endpoint. Without etcd on PATH the test is skipped,
// unless RELAYTEST_REQUIRE_ETCD is set.
func startEtcd(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("etcd")
	if err != nil {
		if os.Getenv("RELAYTEST_REQUIRE_ETCD") != "" {
			t.Fatalf("etcd is required (RELAYTEST_REQUIRE_ETCD) but not on PATH: %v", err)
		}
		t.Skip("etcd not on PATH (Debian: apt-get install etcd-server); set RELAYTEST_REQUIRE_ETCD to require it")
	}
	client, peer := freeAddr(t), freeAddr(t)
	p := relaytest.ExecPath(t, path, nil, nil,
		"--name", "relaytest", "--data-dir", t.TempDir(),
		"--listen-client-urls", "http://"+client, "--advertise-client-urls", "http://"+client,
		"--listen-peer-urls", "http://"+peer, "--initial-advertise-peer-urls", "http://"+peer,
		"--initial-cluster", "relaytest=http://"+peer, "--log-level", "error")
	relaytest.Eventually(t, 10*time.Second, "etcd to serve", func() bool {
		resp, err := http.Get("http://" + client + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	_ = p
	return client
}

func TestClusterWithTheEtcdProvider(t *testing.T) {
	endpoint := startEtcd(t)
	extra := []string{"--cluster-provider", "etcd", "--cluster-etcd", endpoint}
	addrs := []string{freeAddr(t), freeAddr(t)}
	nodes := []*node{execNode(t, addrs[0], nil, extra...), execNode(t, addrs[1], nil, extra...)}
	for _, nd := range nodes {
		nd.listen(t)
	}
	waitMembers(t, nodes, 2)
	a := nodes[0].Dial(t, "kim", "a")
	b := nodes[1].Dial(t, "kim", "b")
	a.Bind()
	b.Bind()
	sent := a.Push(a.Event(1))
	a.Expect("ack")
	if got := b.Expect("push"); !bytes.Equal(got.Raw, sent) {
		t.Fatalf("b got %s", got.Raw)
	}
	joinStore(a, "s", 0)
	joinStore(b, "s", 0)
	storePush(a, "s", 1)
	a.Expect("ack")
	b.Expect("push")

	// Kill the room's node: the store's head is in etcd, so the room's new
	// node knows it even though it never saw the push, and a device that
	// announces the stale head cannot fork.
	owner := ownerOf(t, nodes)
	start := time.Now()
	nodes[owner].kill(t)
	survivor := nodes[1-owner]
	devs := []*relaytest.Client{a, b}
	devs[1-owner].ExpectClose(websocket.StatusServiceRestart)
	t.Logf("the room's other device was told to reconnect %v after the kill", time.Since(start))
	waitMembers(t, []*node{survivor}, 1)
	d := survivor.Dial(t, "kim", devs[1-owner].ClientID)
	if m := joinStore(d, "s", 0); m.Type != "pull_response" || headOf(t, m) != 1 {
		t.Fatalf("join after the kill answered %s, want head 1 from etcd", m.Raw)
	}
	storePush(d, "s", 1)
	d.ExpectError("head_mismatch")
	storePush(d, "s", 2) // on the head: accepted
	d.Expect("ack")
}
