package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/livestore-relay/livestore-relay/test/relaytest"
	"github.com/livestore-relay/livestore-relay/transport"
)

// TestReaderThatKeepsUpIsNeverASlowConsumer: a device that reads every
// frame as it comes, never more than a few frames behind, stays connected
// under a send-queue byte bound that only twice its lag would pass, however
// long the stream. Frames the socket has taken are not queued any more,
// even while the write that carries them has not returned.
func TestReaderThatKeepsUpIsNeverASlowConsumer(t *testing.T) {
	const (
		n      = 3000
		window = 4    // pushes the sender may be ahead of the reader
		pad    = 8000 // a frame is ~8.3 KB: 7 fit the bound, 8 do not
	)
	s := relaytest.Start(t, delivNoRateLimit(func(c *transport.Config) {
		c.Actors.SendQueueBytes = 64 << 10
	}))
	sender, reader := s.Dial(t, "prompt", "sender"), s.Dial(t, "prompt", "reader")
	sender.Bind()
	reader.Bind()

	ctx, cancel := context.WithTimeout(context.Background(), 10*relaytest.Timeout)
	defer cancel()
	read := make(chan struct{}, n)
	readErr := make(chan error, 1)
	go func() {
		for i := range n {
			_, b, err := reader.Conn.Read(ctx)
			if err != nil {
				readErr <- fmt.Errorf("reader: after %d of %d pushes: %w", i, n, err)
				return
			}
			if !strings.Contains(string(b), `"type":"push"`) {
				readErr <- fmt.Errorf("reader: message %d is %.100s, want a push", i, b)
				return
			}
			read <- struct{}{}
		}
		readErr <- nil
	}()
	acks := make(chan error, 1)
	go func() {
		for i := range n {
			if _, _, err := sender.Conn.Read(ctx); err != nil {
				acks <- fmt.Errorf("sender: after %d of %d acks: %w", i, n, err)
				return
			}
		}
		acks <- nil
	}()

	padding := strings.Repeat("x", pad)
	for i := range n {
		if i >= window {
			select {
			case <-read: // the reader has push i-window
			case err := <-readErr:
				t.Fatalf("before push %d: %v (slow consumer closes: %v)", i, err,
					s.Metric(t, "livestore_relay_slow_consumer_disconnects_total"))
			case <-ctx.Done():
				t.Fatalf("reader stuck before push %d", i)
			}
		}
		b := delivPush(t, sender, delivData{User: "prompt", From: "sender", Seq: i, Pad: padding})
		if err := sender.Conn.Write(ctx, websocket.MessageText, b); err != nil {
			t.Fatalf("push %d: %v", i, err)
		}
	}
	if err := <-readErr; err != nil {
		t.Fatalf("%v (slow consumer closes: %v)", err, s.Metric(t, "livestore_relay_slow_consumer_disconnects_total"))
	}
	if err := <-acks; err != nil {
		t.Fatal(err)
	}
	if got := s.Metric(t, "livestore_relay_slow_consumer_disconnects_total"); got != 0 {
		t.Fatalf("slow consumer closes: %v, want 0", got)
	}
	reader.ExpectQuiet()
}
