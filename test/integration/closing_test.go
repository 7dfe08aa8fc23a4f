package integration

import (
	"bytes"
	"encoding/json"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/livestore-relay/livestore-relay/test/relaytest"
)

// closingPushesThenClose writes n pushes and a close frame in one write,
// as a device does that sends what it has and hangs up, and returns the
// pushes' bytes. With endStream it also ends its side of the stream at
// once, without waiting for the server's close.
func closingPushesThenClose(t *testing.T, r *relaytest.RawConn, n int, endStream bool) [][]byte {
	t.Helper()
	var wire bytes.Buffer
	var sent [][]byte
	for i := range n {
		b, err := json.Marshal(r.Envelope("push", map[string]any{"events": []map[string]any{r.Event(map[string]int{"seq": i})}}))
		if err != nil {
			t.Fatal(err)
		}
		sent = append(sent, b)
		if err := ws.WriteFrame(&wire, ws.MaskFrame(ws.NewTextFrame(b))); err != nil {
			t.Fatal(err)
		}
	}
	if err := ws.WriteFrame(&wire, ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, "")))); err != nil {
		t.Fatal(err)
	}
	_ = r.Conn.SetWriteDeadline(time.Now().Add(relaytest.Timeout))
	if _, err := r.Conn.Write(wire.Bytes()); err != nil {
		t.Fatalf("write: %v", err)
	}
	if endStream {
		if err := r.Conn.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatalf("close write: %v", err)
		}
	}
	return sent
}

// TestMessagesBeforeTheClientsCloseAreAllHandled: every push read before
// the client's close frame is relayed and acked, and the acks come before
// the close echo, whether or not the client waits for that echo before
// ending the stream.
func TestMessagesBeforeTheClientsCloseAreAllHandled(t *testing.T) {
	for _, tc := range []struct {
		name      string
		endStream bool
	}{{"close frame", false}, {"close frame and end of stream", true}} {
		t.Run(tc.name, func(t *testing.T) {
			s := relaytest.Start(t, delivNoRateLimit())
			laptop := s.Dial(t, "closer", "laptop")
			laptop.Bind()
			for round := range 20 {
				dev := s.DialRaw(t, "closer", "phone")
				dev.Bind()
				const n = 50
				sent := closingPushesThenClose(t, dev, n, tc.endStream)
				end := dev.ReadUntilClose()
				acks := 0
				for _, m := range end.Messages {
					if m.Type != "ack" {
						t.Fatalf("round %d: sender got %s before its close echo, want only acks", round, m.Raw)
					}
					acks++
				}
				if acks != n || end.Code != ws.StatusNormalClosure {
					t.Fatalf("round %d: sender got %d acks of %d, then close %d (%v); want all acks, then close 1000",
						round, acks, n, end.Code, end.Err)
				}
				for i, want := range sent {
					if m := laptop.Recv(); m.Type != "push" || !bytes.Equal(m.Raw, want) {
						t.Fatalf("round %d: peer's message %d is %.120s, want push %d of %d", round, i, m.Raw, i, n)
					}
				}
			}
			laptop.ExpectQuiet()
		})
	}
}
