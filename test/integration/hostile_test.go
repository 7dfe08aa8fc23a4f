package integration

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/livestore-relay/livestore-relay/test/relaytest"
	"github.com/livestore-relay/livestore-relay/transport"
)

func TestEmptyPingIsAnsweredWithAnEmptyPong(t *testing.T) {
	s := relaytest.Start(t)
	r := s.DialRaw(t, "alice", "laptop")
	// The first control frame of the connection, with no payload.
	r.WriteFrame(ws.NewPingFrame(nil))
	f, err := r.ReadFrame(relaytest.Timeout)
	if err != nil {
		t.Fatalf("waiting for the pong: %v", err)
	}
	if f.Header.OpCode != ws.OpPong || len(f.Payload) != 0 {
		t.Fatalf("got opcode %d with %q, want an empty pong", f.Header.OpCode, f.Payload)
	}
	r.Bind()
}

func TestEmptyCloseIsEchoedWith1000(t *testing.T) {
	s := relaytest.Start(t)
	r := s.DialRaw(t, "alice", "laptop")
	r.Bind()
	r.WriteFrame(ws.NewCloseFrame(nil))
	r.ExpectClose(ws.StatusNormalClosure)
}

// hostileFrames encodes masked frames into one buffer.
func hostileFrames(frames ...ws.Frame) []byte {
	var b bytes.Buffer
	for _, f := range frames {
		_ = ws.WriteFrame(&b, ws.MaskFrame(f))
	}
	return b.Bytes()
}

func TestMessageOfTooManyFragmentsIsClosedWith1009(t *testing.T) {
	s := relaytest.Start(t)
	r := s.DialRaw(t, "alice", "laptop")
	r.Bind()
	frames := []ws.Frame{ws.NewFrame(ws.OpText, false, []byte(`{"type":`))}
	for range transport.MaxFragments {
		frames = append(frames, ws.NewFrame(ws.OpContinuation, false, nil))
	}
	go func() { _, _ = r.Conn.Write(hostileFrames(frames...)) }()
	r.ExpectClose(ws.StatusMessageTooBig)
}

func TestLargeMessageTricklingInIsRelayedIntact(t *testing.T) {
	s := relaytest.Start(t)
	laptop := s.DialRaw(t, "alice", "laptop")
	phone := s.Dial(t, "alice", "phone")
	laptop.Bind()
	phone.Bind()
	msg, err := json.Marshal(laptop.Envelope("push", map[string]any{"events": []any{
		laptop.Event(strings.Repeat("t", 300<<10)),
	}}))
	if err != nil {
		t.Fatal(err)
	}
	frame := hostileFrames(ws.NewTextFrame(msg))
	// The header announces the whole payload; the bytes follow in small
	// writes, each its own segment.
	for off := 0; off < len(frame); off += 512 {
		if _, err := laptop.Conn.Write(frame[off:min(off+512, len(frame))]); err != nil {
			t.Fatal(err)
		}
	}
	if got := phone.Expect("push"); !bytes.Equal(got.Raw, msg) {
		t.Fatalf("relayed message differs: sent %d bytes, got %d", len(msg), len(got.Raw))
	}
	laptop.Expect("ack")
}

// hostileFlood writes buf over and over on a raw connection until the test
// ends or the relay closes it.
func hostileFlood(t *testing.T, r *relaytest.RawConn, buf []byte) {
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := r.Conn.Write(buf); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		_ = r.Conn.Close()
		wg.Wait()
	})
}

func TestFloodingConnectionsDoNotStallOtherUsers(t *testing.T) {
	s := relaytest.Start(t)
	// Connections that keep their sockets full: unsolicited empty pongs,
	// and messages of empty continuation frames that never end. There are
	// more of them than the epoll reader has reactors.
	pongs := make([]ws.Frame, 16<<10)
	for i := range pongs {
		pongs[i] = ws.NewPongFrame(nil)
	}
	conts := make([]ws.Frame, 16<<10)
	for i := range conts {
		conts[i] = ws.NewFrame(ws.OpContinuation, false, nil)
	}
	pongFlood, contFlood := hostileFrames(pongs...), hostileFrames(conts...)
	for i := range 2 {
		hostileFlood(t, s.DialRaw(t, "mallory", "pongs"+strconv.Itoa(i)), pongFlood)
		frag := s.DialRaw(t, "mallory", "fragments"+strconv.Itoa(i))
		frag.WriteFrame(ws.NewFrame(ws.OpText, false, []byte(`{`)))
		hostileFlood(t, frag, contFlood)
	}

	laptop := s.DialRaw(t, "bob", "laptop")
	phone := s.DialRaw(t, "bob", "phone")
	laptop.Bind()
	phone.Bind()
	var slowest time.Duration
	for i := range 20 {
		start := time.Now()
		sent := laptop.Push(laptop.Event(i))
		if got := phone.Expect("push"); !bytes.Equal(got.Raw, sent) {
			t.Fatalf("push %d: relayed bytes differ", i)
		}
		laptop.Expect("ack")
		slowest = max(slowest, time.Since(start))
	}
	t.Logf("slowest push round trip under the flood: %v", slowest)
}

func TestPingsCountAgainstTheRateAndThoseOverItGetNoPong(t *testing.T) {
	const burst = 5
	s := relaytest.Start(t, relaytest.WithLimits(func(c *transport.Config) {
		c.Actors.Rate, c.Actors.RateBurst = 0.001, burst
	}))
	r := s.DialRaw(t, "alice", "laptop")
	pings := make([]ws.Frame, 2*burst)
	for i := range pings {
		pings[i] = ws.NewPingFrame([]byte(strconv.Itoa(i)))
	}
	if _, err := r.Conn.Write(hostileFrames(pings...)); err != nil {
		t.Fatal(err)
	}
	// The bucket is empty now: the next message is over the rate too.
	r.Send(r.Envelope("pull", map[string]any{}))
	var pongs []string
	for {
		f, err := r.ReadFrame(relaytest.Timeout)
		if err != nil {
			t.Fatalf("after %d pongs: %v", len(pongs), err)
		}
		if f.Header.OpCode == ws.OpPong {
			pongs = append(pongs, string(f.Payload))
			continue
		}
		if f.Header.OpCode != ws.OpText || !bytes.Contains(f.Payload, []byte(`"rate_limited"`)) {
			t.Fatalf("got opcode %d %q, want the rate_limited error", f.Header.OpCode, f.Payload)
		}
		break
	}
	if strings.Join(pongs, ",") != "0,1,2,3,4" {
		t.Fatalf("pongs %v, want the first %d pings answered", pongs, burst)
	}
}
