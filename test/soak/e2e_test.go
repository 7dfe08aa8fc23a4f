package soak

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/livestore-relay/livestore-relay/test/relaytest"
)

// runSoak runs cfg against a relay to its end and returns the result, its
// JSON, and what the run printed on its standard error.
func runSoak(t *testing.T, cfg Config, timeout time.Duration) (*Result, []byte, string) {
	t.Helper()
	var stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	res, err := Run(ctx, cfg, &stderr)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	b, _ := json.Marshal(res)
	return res, b, stderr.String()
}

// TestSoakPasses runs a few hundred connections with pushes and peer_pulls
// against the real relay binary: every promise must hold.
func TestSoakPasses(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end run")
	}
	t.Parallel()
	relay := relaytest.Binary(t)
	cfg := Config{
		SpawnRelay: relay, Users: 100, Devices: 4, Rate: 400, EventsPerPush: 2, EventBytes: 200,
		Duration: 3 * time.Second, Drain: 5 * time.Second, PeerPullEvery: time.Second, PeerPullPages: 2,
		ConnectConcurrency: 32, ConnectTimeout: 10 * time.Second, Progress: -1,
	}
	res, b, stderr := runSoak(t, cfg, time.Minute)
	if !res.Pass {
		t.Fatalf("soak failed: %v\n%s\n%s", res.Failures, b, stderr)
	}
	switch {
	case res.Connections != 400, res.OpenAtEnd != 400:
		t.Errorf("connections %d, open at end %d, want 400", res.Connections, res.OpenAtEnd)
	case res.Pushes < 1000 || res.Acks != res.Pushes:
		t.Errorf("pushes %d acks %d", res.Pushes, res.Acks)
	case res.ExpectedDeliveries != 3*res.Acks || res.Deliveries != res.ExpectedDeliveries:
		t.Errorf("expected %d deliveries, got %d (acks %d)", res.ExpectedDeliveries, res.Deliveries, res.Acks)
	case res.PeerPulls < 800 || res.PeerPullsAnswered != res.PeerPulls:
		t.Errorf("peer_pulls %d answered %d", res.PeerPulls, res.PeerPullsAnswered)
	case res.PeerPullPages != 3*2*res.PeerPulls:
		t.Errorf("peer_pull pages %d, want 3 peers × 2 pages × %d", res.PeerPullPages, res.PeerPulls)
	case res.DeliverP50 <= 0 || res.AckP50 <= 0 || res.DeliverMax < res.DeliverP999:
		t.Errorf("latencies: %s", b)
	case res.ServerPeakRSS == nil || *res.ServerPeakRSS <= 0 || res.ServerPeakGoroutines == nil || *res.ServerPeakGoroutines <= 0:
		t.Errorf("server metrics: %s", b)
	case res.RelayExitCode == nil || *res.RelayExitCode != 0:
		t.Errorf("relay exit: %s", b)
	}
}

// TestSoakCatchesInjectedLoss runs against a relay built to drop one relayed
// push in a thousand (per user) while still acking it: the soak must fail,
// with a non-zero exit status, and name the loss.
func TestSoakCatchesInjectedLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end run")
	}
	t.Parallel()
	relay := relaytest.Build(t, "./cmd/relay", relaytest.BuildOptions{Flags: []string{"-tags", "relay_lossinject"}})
	// The relay counts relayed pushes per user, so each user must send more
	// than 1,000: two users with six devices each at 1,500 pushes/s relay
	// about 2,250 each in 3 s (125/s per device, under the rate limit), so
	// each drops at least one push, to 5 peers, with room for a slow machine.
	args := []string{
		"--spawn-relay", relay, "--users", "2", "--devices", "6", "--rate", "1500",
		"--duration", "3s", "--drain", "1s", "--json", "--progress", "-1s",
	}
	var stdout, stderr bytes.Buffer
	code := Main(args, strings.NewReader(""), &stdout, &stderr, func(string) string { return "" })
	if code == ExitPass {
		t.Fatalf("soak passed against a lossy relay\n%s\n%s", stdout.String(), stderr.String())
	}
	if code != ExitFail {
		t.Fatalf("exit %d, want %d\n%s", code, ExitFail, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var res Result
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		t.Fatalf("last stdout line is not the JSON result: %v\n%s", err, stdout.String())
	}
	if res.Pushes < 2000 || res.Lost <= 0 || res.Pass {
		t.Fatalf("want a failed run with lost > 0 after 2,000+ pushes: %s", lines[len(lines)-1])
	}
	// Nothing but the loss: every push acked, nothing duplicated or out of order.
	if res.Acks != res.Pushes || res.Duplicated != 0 || res.Reordered != 0 || res.Foreign != 0 || res.Lost != res.ExpectedDeliveries-res.Deliveries {
		t.Errorf("unexpected counts: %s", lines[len(lines)-1])
	}
	if !strings.Contains(strings.Join(res.Failures, ";"), "lost") {
		t.Errorf("failures %v do not name the loss", res.Failures)
	}
}

// TestSoakSequencedStore runs devices that share one sequenced store per
// user, with heads kept in a state directory: every accepted push must be
// delivered like a plain one, and the refused ones must be retried.
func TestSoakSequencedStore(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end run")
	}
	t.Parallel()
	relay := relaytest.Binary(t)
	cfg := Config{
		SpawnRelay: relay, RelayFlags: "--state-dir " + t.TempDir(), Users: 50, Devices: 4, Rate: 400, EventsPerPush: 2,
		EventBytes: 200, Duration: 3 * time.Second, Drain: 5 * time.Second, PeerPullPages: 2, Store: "todos",
		ConnectConcurrency: 32, ConnectTimeout: 10 * time.Second, Progress: -1,
	}
	res, b, stderr := runSoak(t, cfg, time.Minute)
	if !res.Pass {
		t.Fatalf("soak failed: %v\n%s\n%s", res.Failures, b, stderr)
	}
	if res.Acks < 600 || res.Acks != res.Pushes || res.Deliveries != 3*res.Acks {
		t.Errorf("pushes %d acks %d deliveries %d: %s", res.Pushes, res.Acks, res.Deliveries, b)
	}
}
