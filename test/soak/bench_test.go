package soak

import (
	"encoding/json"
	"testing"

	"github.com/gobwas/ws"
)

// BenchmarkDecodeInbound is the per-delivery parse of a relayed push.
func BenchmarkDecodeInbound(b *testing.B) {
	id := newIdentity("soak-user-1", "dev3", "s-1", 3, "")
	push := id.appendPush(nil, 1700000000000, pushSpec{seq: 12345, eventNumber: 9, ts: 1700000000001, sentNs: 1700000000000000000, events: 1, pad: 64})
	var m inbound
	b.SetBytes(int64(len(push)))
	b.ReportAllocs()
	for b.Loop() {
		if err := decodeInbound(push, &m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeInboundStdlib is the same parse with encoding/json, for
// comparison with the purpose-built scanner.
func BenchmarkDecodeInboundStdlib(b *testing.B) {
	id := newIdentity("soak-user-1", "dev3", "s-1", 3, "")
	push := id.appendPush(nil, 1700000000000, pushSpec{seq: 12345, eventNumber: 9, ts: 1700000000001, sentNs: 1700000000000000000, events: 1, pad: 64})
	var m struct {
		Type     string `json:"type"`
		ClientID string `json:"clientId"`
		Payload  struct {
			Events []struct {
				Data stamp `json:"data"`
			} `json:"events"`
		} `json:"payload"`
	}
	b.SetBytes(int64(len(push)))
	b.ReportAllocs()
	for b.Loop() {
		if err := json.Unmarshal(push, &m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBuildPushFrame is the per-push cost of building a masked frame.
func BenchmarkBuildPushFrame(b *testing.B) {
	id := newIdentity("soak-user-1", "dev3", "s-1", 3, "")
	var fb frameBuilder
	b.ReportAllocs()
	for b.Loop() {
		fb.reset()
		fb.b = id.appendPush(fb.b, 1700000000000, pushSpec{seq: 12345, eventNumber: 9, ts: 1700000000001, sentNs: 1700000000000000000, events: 1, pad: 64})
		_ = fb.finish(ws.OpText, [4]byte{1, 2, 3, 4})
	}
}
