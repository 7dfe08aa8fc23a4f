package integration

import (
	"net/http"
	"testing"

	"github.com/livestore-relay/livestore-relay/test/relaytest"
)

// TestMetricsMoveWithTraffic scrapes /metrics around real traffic and checks
// that each family counts what happened.
func TestMetricsMoveWithTraffic(t *testing.T) {
	s := relaytest.Start(t)
	m := func(name string, labels ...string) float64 { return s.Metric(t, name, labels...) }

	laptop := s.Dial(t, "alice", "laptop")
	phone := s.Dial(t, "alice", "phone")
	tablet := s.Dial(t, "alice", "tablet")
	bob := s.Dial(t, "bob", "desk")
	for _, c := range []*relaytest.Client{laptop, phone, tablet, bob} {
		c.Bind()
	}
	if got := m("livestore_relay_connections"); got != 4 {
		t.Errorf("connections = %v, want 4", got)
	}
	if got := m("livestore_relay_rooms"); got != 2 {
		t.Errorf("rooms = %v, want 2", got)
	}
	if got := m("livestore_relay_handshake_duration_seconds"); got != 4 {
		t.Errorf("handshake_duration_seconds count = %v, want 4", got)
	}

	pushesIn := m("livestore_relay_messages_received_total", "type", "push")
	pushesOut := m("livestore_relay_messages_sent_total", "type", "push")
	acks := m("livestore_relay_messages_sent_total", "type", "ack")
	bytesIn := m("livestore_relay_received_bytes_total", "type", "push")
	latency := m("livestore_relay_relay_latency_seconds")
	const n = 5
	sent := 0
	for range n {
		sent += len(laptop.Push(laptop.Event("x")))
		laptop.Expect("ack")
		phone.Expect("push")
		tablet.Expect("push")
	}
	if d := m("livestore_relay_messages_received_total", "type", "push") - pushesIn; d != n {
		t.Errorf("received push +%v, want +%d", d, n)
	}
	if d := m("livestore_relay_messages_sent_total", "type", "push") - pushesOut; d != 2*n {
		t.Errorf("sent push +%v, want +%d (two recipients each)", d, 2*n)
	}
	if d := m("livestore_relay_messages_sent_total", "type", "ack") - acks; d != n {
		t.Errorf("sent ack +%v, want +%d", d, n)
	}
	if d := m("livestore_relay_received_bytes_total", "type", "push") - bytesIn; d != float64(sent) {
		t.Errorf("received push bytes +%v, want +%d", d, sent)
	}
	if d := m("livestore_relay_relay_latency_seconds") - latency; d != n {
		t.Errorf("relay latency observations +%v, want +%d", d, n)
	}

	errs := m("livestore_relay_errors_total", "code", "unsupported_type")
	laptop.Send(laptop.Envelope("nonsense", map[string]any{}))
	laptop.ExpectError("unsupported_type")
	if d := m("livestore_relay_errors_total", "code", "unsupported_type") - errs; d != 1 {
		t.Errorf("errors_total{unsupported_type} +%v, want +1", d)
	}

	authFailures := m("livestore_relay_auth_failures_total", "reason", "malformed")
	if _, resp, err := s.DialWith(t, s.URL+"?token=not-a-jwt", nil); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("bad token: %v", err)
	}
	if d := m("livestore_relay_auth_failures_total", "reason", "malformed") - authFailures; d != 1 {
		t.Errorf("auth_failures_total{malformed} +%v, want +1", d)
	}

	closes := m("livestore_relay_closes_total", "code", "1000")
	tablet.Close()
	relaytest.Eventually(t, relaytest.Timeout, "the close to be counted", func() bool {
		return m("livestore_relay_closes_total", "code", "1000")-closes == 1
	})
	bob.Conn.CloseNow() // no close frame: counted as 1006
	relaytest.Eventually(t, relaytest.Timeout, "bob's room to go", func() bool {
		return m("livestore_relay_rooms") == 1 && m("livestore_relay_connections") == 2
	})
	if got := m("livestore_relay_closes_total", "code", "1006"); got != 1 {
		t.Errorf("closes_total{1006} = %v, want 1", got)
	}
}
