package integration

import (
	"bytes"
	"testing"

	"github.com/livestore-relay/livestore-relay/test/relaytest"
)

func TestPushIsRelayedByteForByteAndAcked(t *testing.T) {
	s := relaytest.Start(t)
	laptop := s.Dial(t, "alice", "laptop")
	phone := s.Dial(t, "alice", "phone")
	laptop.Bind()
	phone.Bind()

	sent := laptop.Push(laptop.Event(map[string]any{"text": "héllo \u2603"}), laptop.Event(nil))
	got := phone.Expect("push")
	if !bytes.Equal(got.Raw, sent) {
		t.Fatalf("relayed bytes differ:\n sent %s\n got  %s", sent, got.Raw)
	}
	ack := laptop.Expect("ack")
	var n int
	ack.Field(t, "receivedCount", &n)
	if n != 2 {
		t.Fatalf("receivedCount = %d, want 2", n)
	}
}
