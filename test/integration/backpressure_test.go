package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

// TestSendQueueGaugeReturnsToZeroAfterAbruptCloses: connections with
// frames still queued for them end without a close frame while a peer keeps
// pushing (a reset; or the end of the client's stream, after which it
// reads what it is sent); once every connection has ended, nothing is
// counted as queued any more.
func TestSendQueueGaugeReturnsToZeroAfterAbruptCloses(t *testing.T) {
	t.Run("reset", func(t *testing.T) {
		queueGaugeAfterAbruptCloses(t, func(t *testing.T, _ func() int64, raws []*relaytest.RawConn) {
			for _, r := range raws {
				_ = r.Conn.(*net.TCPConn).SetLinger(0)
				_ = r.Conn.Close()
			}
		})
	})
	t.Run("end of stream", func(t *testing.T) {
		queueGaugeAfterAbruptCloses(t, func(t *testing.T, acked func() int64, raws []*relaytest.RawConn) {
			for _, r := range raws {
				if err := r.Conn.(*net.TCPConn).CloseWrite(); err != nil {
					t.Fatal(err)
				}
			}
			// More pushes are queued for whoever is still there (an ack
			// says so) while the server reads the end of every stream;
			// then the clients read all they are sent.
			more := acked() + 200
			relaytest.Eventually(t, 10*relaytest.Timeout, "more pushes acked", func() bool {
				return acked() >= more
			})
			var wg sync.WaitGroup
			for _, r := range raws {
				wg.Go(func() {
					_ = r.Conn.SetReadDeadline(time.Now().Add(10 * relaytest.Timeout))
					_, _ = io.Copy(io.Discard, r.Conn)
					_ = r.Conn.Close()
				})
			}
			wg.Wait()
		})
	})
}

// queueGaugeAfterAbruptCloses binds receivers that stop reading, pushes to
// them until frames are queued for each, ends them with kill, and checks
// the send-queue gauge once every connection has ended.
func queueGaugeAfterAbruptCloses(t *testing.T, kill func(t *testing.T, acked func() int64, raws []*relaytest.RawConn)) {
	const (
		receivers = 20
		queued    = "livestore_relay_send_queue_messages"
		conns     = "livestore_relay_connections"
	)
	s := relaytest.Start(t, delivNoRateLimit(func(c *transport.Config) {
		c.Actors.SendQueueMessages = 1 << 16
		c.Actors.SendQueueBytes = 1 << 30
		c.WriteTimeout = time.Minute
	}))
	sender := s.Dial(t, "vanish", "sender")
	sender.Bind()
	var raws []*relaytest.RawConn
	for i := range receivers {
		r := s.DialRaw(t, "vanish", fmt.Sprintf("receiver-%d", i))
		r.Bind()
		raws = append(raws, r) // and never read again
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var acks atomic.Int64
	go func() { // the sender's acks
		for {
			if _, _, err := sender.Conn.Read(ctx); err != nil {
				return
			}
			acks.Add(1)
		}
	}()
	stop := make(chan struct{})
	pushed := make(chan error, 1)
	go func() {
		padding := strings.Repeat("x", 4<<10)
		for i := 0; ; i++ {
			select {
			case <-stop:
				pushed <- nil
				return
			default:
			}
			b := delivPush(t, sender, delivData{User: "vanish", From: "sender", Seq: i, Pad: padding})
			if err := sender.Conn.Write(ctx, websocket.MessageText, b); err != nil {
				pushed <- err
				return
			}
		}
	}()
	// Every receiver's socket buffers are full and frames wait for it.
	relaytest.Eventually(t, 10*relaytest.Timeout, "frames queued for every receiver", func() bool {
		return s.Metric(t, queued) >= receivers*200
	})
	kill(t, acks.Load, raws)
	relaytest.Eventually(t, 10*relaytest.Timeout, "the receivers' connections to end", func() bool {
		return s.Metric(t, conns) == 1
	})
	close(stop)
	if err := <-pushed; err != nil {
		t.Fatalf("sender: %v", err)
	}
	sender.Close()
	relaytest.Eventually(t, 10*relaytest.Timeout, "every connection to end", func() bool {
		return s.Metric(t, conns) == 0
	})
	deadline := time.Now().Add(relaytest.Timeout)
	for s.Metric(t, queued) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v with no connection open, want 0", queued, s.Metric(t, queued))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestFullSocketPastTheWriteTimeoutIsClosedWhileItsPeersKeepUp: a device
// that stops reading, under a send-queue bound too large to be reached,
// fills its socket; once the socket has taken no bytes for the write
// timeout it is closed as a slow consumer (without a close frame: the
// stream may end inside a frame). Meanwhile the room goes on: its peers get
// every push and the sender every ack, although the connection actors run
// on the room's goroutine.
func TestFullSocketPastTheWriteTimeoutIsClosedWhileItsPeersKeepUp(t *testing.T) {
	const slow = "livestore_relay_slow_consumer_disconnects_total"
	s := relaytest.Start(t, delivNoRateLimit(func(c *transport.Config) {
		c.WriteTimeout = 300 * time.Millisecond
	}))
	stalled := s.DialRaw(t, "alice", "stalled")
	stalled.Bind() // and never read again
	laptop, phone := s.Dial(t, "alice", "laptop"), s.Dial(t, "alice", "phone")
	laptop.Bind()
	phone.Bind()
	pad := strings.Repeat("x", 32<<10)
	seq := 0
	push := func() {
		t.Helper()
		b := delivPush(t, laptop, delivData{User: "alice", From: "laptop", Seq: seq, Pad: pad})
		laptop.SendRaw(b)
		if got := delivAckedSeq(t, laptop.Recv()); got != seq {
			t.Fatalf("ack for push %d answers push %d", seq, got)
		}
		if m := phone.Recv(); !bytes.Equal(m.Raw, b) {
			t.Fatalf("phone: push %d is %.200s", seq, m.Raw)
		}
		seq++
	}
	// Pushes every acked and relayed at once while the stalled socket
	// fills, then until its write timeout has passed.
	for s.Metric(t, slow) == 0 {
		if seq > 100000 {
			t.Fatal("stalled client never closed")
		}
		push()
	}
	relaytest.Eventually(t, 10*relaytest.Timeout, "the stalled connection to end", func() bool {
		return s.Metric(t, "livestore_relay_connections") == 2
	})
	for range 10 {
		push()
	}
}

// TestDeviceThatStopsReadingUntilItsSocketIsFullGetsEverythingWhenItReadsAgain:
// a device that reads nothing while 26 MB are pushed to it, far more than
// loopback socket buffers hold, gets every push, in order and byte for byte,
// once it reads again: its connection waits for the socket to take bytes
// again, and loses or reorders nothing meanwhile.
func TestDeviceThatStopsReadingUntilItsSocketIsFullGetsEverythingWhenItReadsAgain(t *testing.T) {
	const n, pad = 1600, 16 << 10
	s := relaytest.Start(t, delivNoRateLimit(func(c *transport.Config) {
		c.Actors.SendQueueBytes = 256 << 20
		c.Actors.SendQueueMessages = 4 * n
	}))
	laptop, phone := s.Dial(t, "alice", "laptop"), s.Dial(t, "alice", "phone")
	laptop.Bind()
	phone.Bind()
	padding := strings.Repeat("x", pad)
	frames := make([][]byte, n)
	for i := range frames {
		frames[i] = delivPush(t, laptop, delivData{User: "alice", From: "laptop", Seq: i, Pad: padding})
	}
	acks := delivReadN(laptop, n)
	for _, b := range frames {
		laptop.SendRaw(b)
	}
	// Every push is acked, so queued for the phone, which has read none.
	delivCheckAcks(t, "laptop", delivWait(t, acks), n)
	got := delivWait(t, delivReadN(phone, n))
	if extra := delivCheckStream(t, "phone", got, map[string][][]byte{"laptop": frames}); len(extra) > 0 {
		t.Fatalf("phone got an ack for a push it never sent: %.200s", extra[0].Raw)
	}
	if got := s.Metric(t, "livestore_relay_slow_consumer_disconnects_total"); got != 0 {
		t.Fatalf("slow consumer closes: %v, want 0", got)
	}
}
