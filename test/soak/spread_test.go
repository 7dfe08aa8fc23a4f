package soak

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/livestore-relay/livestore-relay/test/relaytest"
)

func TestNodeFor(t *testing.T) {
	const users = 99
	for _, tc := range []struct{ devices, nodes int }{{4, 3}, {3, 3}, {2, 3}, {5, 2}, {4, 1}} {
		load := make([]int, tc.nodes)
		for u := range users {
			seen := map[int]bool{}
			for d := range tc.devices {
				n := nodeFor(u, d, tc.nodes)
				if n < 0 || n >= tc.nodes {
					t.Fatalf("nodeFor(%d, %d, %d) = %d", u, d, tc.nodes, n)
				}
				seen[n] = true
				load[n]++
			}
			if want := min(tc.devices, tc.nodes); len(seen) != want {
				t.Errorf("%d devices over %d nodes: user %d is on %d nodes, want %d", tc.devices, tc.nodes, u, len(seen), want)
			}
		}
		lo, hi := load[0], load[0]
		for _, l := range load {
			lo, hi = min(lo, l), max(hi, l)
		}
		// 99 users: the rotation evens the load out to within one device per
		// node and round.
		if hi-lo > tc.devices {
			t.Errorf("%d devices over %d nodes: connections per node %v", tc.devices, tc.nodes, load)
		}
	}
}

func TestParseURLList(t *testing.T) {
	c, err := ParseFlags([]string{"--secret", "s", "--url", "ws://127.0.0.1:1/x, ws://localhost:2/x,", "--metrics-url", "http://127.0.0.1:1/metrics,http://127.0.0.1:2/metrics"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got := splitList(c.URL); len(got) != 2 || got[1] != "ws://localhost:2/x" {
		t.Errorf("urls %q", got)
	}
	for _, args := range [][]string{
		{"--secret", "s", "--url", "ws://127.0.0.1:1/x,ws://10.0.0.1:1/x"},
		{"--secret", "s", "--url", ","},
		{"--secret", "s", "--url", "ws://127.0.0.1:1/x", "--metrics-url", "http://127.0.0.1:1/m,http://192.0.2.1/m"},
		{"--url", "ws://127.0.0.1:1/x", "--secret", "s", "--spawn-nodes", "3"},
		{"--spawn-relay", "relay", "--spawn-nodes", "-1"},
		{"--spawn-relay", "relay", "--spawn-nodes", "100"},
	} {
		if _, err := ParseFlags(args, io.Discard); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
}

// countingProxy forwards TCP connections to target and records, per user,
// how many WebSocket upgrades came through it: the user is read from the
// token in the request line.
type countingProxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	byUser map[string]int
}

func startProxy(t *testing.T, target string) *countingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &countingProxy{ln: ln, target: target, byUser: map[string]int{}}
	go p.serve()
	t.Cleanup(func() { _ = ln.Close() })
	return p
}

func (p *countingProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.forward(c)
	}
}

func (p *countingProxy) forward(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil {
		return
	}
	p.count(line)
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer up.Close()
	if _, err := io.WriteString(up, line); err != nil {
		return
	}
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(c, up)
		_ = c.Close()
		close(done)
	}()
	_, _ = io.Copy(up, br)
	_ = up.Close()
	<-done
}

// count takes the user from the JWT in "GET /path?token=... HTTP/1.1".
func (p *countingProxy) count(requestLine string) {
	user := "?"
	if f := strings.Fields(requestLine); len(f) == 3 {
		if u, err := url.Parse(f[1]); err == nil {
			if parts := strings.Split(u.Query().Get("token"), "."); len(parts) == 3 {
				if b, err := base64.RawURLEncoding.DecodeString(parts[1]); err == nil {
					var claims struct {
						Sub string `json:"sub"`
					}
					if json.Unmarshal(b, &claims) == nil {
						user = claims.Sub
					}
				}
			}
		}
	}
	p.mu.Lock()
	p.byUser[user]++
	p.mu.Unlock()
}

func (p *countingProxy) counts() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]int{}
	for k, v := range p.byUser {
		out[k] = v
	}
	return out
}

// TestSoakSpreadsDevicesOverURLs runs a soak through two proxies in front
// of one relay, given as a two-URL list: every user must have devices
// behind both, in the proportion nodeFor gives, and every check must hold
// as with one URL.
func TestSoakSpreadsDevicesOverURLs(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end run")
	}
	t.Parallel()
	const secret = "spread-test-secret"
	relay, err := startRelay(relaytest.Binary(t), secret, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = relay.stop() }()
	proxies := []*countingProxy{startProxy(t, relay.addr), startProxy(t, relay.addr)}
	var urls []string
	for _, p := range proxies {
		urls = append(urls, "ws://"+p.ln.Addr().String()+syncPath)
	}
	const users, devices = 20, 3
	cfg := Config{
		URL: strings.Join(urls, ","), Secret: secret, MetricsURL: "http://" + relay.addr + "/metrics",
		UserPrefix: "spread-", Users: users, Devices: devices, Rate: 200, EventsPerPush: 1, EventBytes: 100,
		Duration: 2 * time.Second, Drain: 5 * time.Second, PeerPullEvery: time.Second, PeerPullPages: 2,
		ConnectConcurrency: 16, ConnectTimeout: 10 * time.Second, Progress: -1,
	}
	res, b, stderr := runSoak(t, cfg, time.Minute)
	if !res.Pass || res.Connections != users*devices || res.Deliveries != 2*res.Acks || res.PeerPullsAnswered != res.PeerPulls {
		t.Fatalf("soak through two URLs: %s\n%s", b, stderr)
	}
	// One metrics URL: the figures are the relay's, not a list of nodes.
	if res.ServerPeakRSS == nil || res.ServerNodes != nil {
		t.Errorf("server figures with one metrics URL: %s", b)
	}
	for i, p := range proxies {
		got := p.counts()
		for u := range users {
			want := 0
			for d := range devices {
				if nodeFor(u, d, len(proxies)) == i {
					want++
				}
			}
			if id := cfg.UserPrefix + strconv.Itoa(u); got[id] != want {
				t.Errorf("proxy %d: user %s had %d connections, want %d (all: %v)", i, id, got[id], want, got)
			}
		}
	}
}
