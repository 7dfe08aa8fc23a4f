package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/gobwas/ws"

	"github.com/livestore-relay/livestore-relay/test/relaytest"
	"github.com/livestore-relay/livestore-relay/transport"
)

// limMaxMessage is the message size limit the size tests configure.
const limMaxMessage = 1024

func limSmallMessages() relaytest.Option {
	return relaytest.WithLimits(func(c *transport.Config) { c.MaxMessageBytes = limMaxMessage })
}

// limPushOfSize encodes a valid push of r's device that is exactly size bytes long.
func limPushOfSize(t *testing.T, r *relaytest.RawConn, size int) []byte {
	t.Helper()
	env := r.Envelope("push", map[string]any{"events": []any{r.Event("")}})
	b, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	pad := size - len(b)
	if pad < 0 {
		t.Fatalf("a push is already %d bytes, more than %d", len(b), size)
	}
	events := env["payload"].(map[string]any)["events"].([]any)
	events[0].(map[string]any)["data"] = strings.Repeat("p", pad)
	if b, err = json.Marshal(env); err != nil {
		t.Fatal(err)
	}
	if len(b) != size {
		t.Fatalf("built a push of %d bytes, want %d", len(b), size)
	}
	return b
}

// limFragments writes msg as len(cuts)+1 fragments, cut at the given offsets.
func limFragments(r *relaytest.RawConn, msg []byte, cuts ...int) {
	op, start := ws.OpText, 0
	for _, end := range append(cuts, len(msg)) {
		r.WriteFrame(ws.NewFrame(op, end == len(msg), msg[start:end]))
		op, start = ws.OpContinuation, end
	}
}

func TestFramesBreakingTheRulesCloseTheConnectionWithTheirCode(t *testing.T) {
	cases := []struct {
		name string
		send func(t *testing.T, r *relaytest.RawConn)
		want ws.StatusCode
	}{
		{"message one byte over the limit", func(t *testing.T, r *relaytest.RawConn) {
			r.SendText(limPushOfSize(t, r, limMaxMessage+1))
		}, ws.StatusMessageTooBig},
		{"header announcing a huge payload that is never sent", func(t *testing.T, r *relaytest.RawConn) {
			// Refused on the header alone: the payload never comes, so a
			// server waiting for it would never close.
			r.WriteHeader(ws.Header{Fin: true, OpCode: ws.OpText, Length: 1 << 40})
		}, ws.StatusMessageTooBig},
		{"header announcing one byte over the limit, payload withheld", func(t *testing.T, r *relaytest.RawConn) {
			r.WriteHeader(ws.Header{Fin: true, OpCode: ws.OpText, Length: limMaxMessage + 1})
		}, ws.StatusMessageTooBig},
		{"fragments adding up to more than the limit", func(t *testing.T, r *relaytest.RawConn) {
			limFragments(r, limPushOfSize(t, r, limMaxMessage+200), 600)
		}, ws.StatusMessageTooBig},
		{"last fragment's header taking the message over the limit, payload withheld", func(t *testing.T, r *relaytest.RawConn) {
			r.WriteFrame(ws.NewFrame(ws.OpText, false, bytes.Repeat([]byte(" "), limMaxMessage-10)))
			r.WriteHeader(ws.Header{Fin: true, OpCode: ws.OpContinuation, Length: 11})
		}, ws.StatusMessageTooBig},
		{"invalid UTF-8 in a text frame", func(t *testing.T, r *relaytest.RawConn) {
			b, _ := json.Marshal(r.Envelope("push", map[string]any{"events": []any{r.Event("ok")}}))
			r.SendText(bytes.Replace(b, []byte(`"ok"`), []byte("\"o\xffk\""), 1))
		}, ws.StatusInvalidFramePayloadData},
		{"invalid UTF-8 in a fragmented text message", func(t *testing.T, r *relaytest.RawConn) {
			msg, _ := json.Marshal(r.Envelope("push", map[string]any{"events": []any{r.Event("é")}}))
			i := bytes.Index(msg, []byte("é"))
			// The first byte of a two-byte sequence, then an ASCII byte.
			msg = bytes.Replace(msg, []byte("é"), []byte("\xc3x"), 1)
			limFragments(r, msg, i+1)
		}, ws.StatusInvalidFramePayloadData},
		{"unmasked frame", func(t *testing.T, r *relaytest.RawConn) {
			b, _ := json.Marshal(r.Envelope("pull", map[string]any{}))
			r.WriteUnmasked(ws.NewTextFrame(b))
		}, ws.StatusProtocolError},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := relaytest.Start(t, limSmallMessages())
			r := s.DialRaw(t, "alice", "laptop")
			r.Bind()
			phone := s.Dial(t, "alice", "phone")
			phone.Bind()
			tc.send(t, r)
			r.ExpectClose(tc.want)
			// Nothing of the offending message reached the other device,
			// and it is no longer listed as a peer.
			phone.Send(phone.Envelope("pull", map[string]any{}))
			m := phone.Expect("pull_response")
			if len(m.OnlinePeers) != 0 {
				t.Fatalf("closed connection still listed as a peer: %s", m.Raw)
			}
		})
	}
}

func TestMessageOverTheLimitFromALibraryClientIsClosedWith1009(t *testing.T) {
	s := relaytest.Start(t, limSmallMessages())
	laptop := s.Dial(t, "alice", "laptop")
	laptop.Bind()
	laptop.Push(laptop.Event(strings.Repeat("x", limMaxMessage)))
	laptop.ExpectClose(websocket.StatusMessageTooBig)
}

func TestMessageOfExactlyTheLimitIsRelayed(t *testing.T) {
	s := relaytest.Start(t, limSmallMessages())
	laptop := s.DialRaw(t, "alice", "laptop")
	phone := s.Dial(t, "alice", "phone")
	laptop.Bind()
	phone.Bind()
	b := limPushOfSize(t, laptop, limMaxMessage)
	laptop.SendText(b)
	if got := phone.Expect("push"); !bytes.Equal(got.Raw, b) {
		t.Fatalf("relayed bytes differ:\n sent %s\n got  %s", b, got.Raw)
	}
	laptop.Expect("ack")
}

func TestFragmentedMessageUnderTheLimitIsRelayedAsOneMessage(t *testing.T) {
	s := relaytest.Start(t, limSmallMessages())
	laptop := s.DialRaw(t, "alice", "laptop")
	phone := s.Dial(t, "alice", "phone")
	laptop.Bind()
	phone.Bind()

	msg, err := json.Marshal(laptop.Envelope("push", map[string]any{"events": []any{
		laptop.Event(map[string]any{"text": strings.Repeat("é", 100)}), laptop.Event("second"),
	}}))
	if err != nil {
		t.Fatal(err)
	}
	// Cut inside a two-byte character, and send a ping between fragments
	// (control frames may interleave with a fragmented message).
	cut := bytes.Index(msg, []byte("é")) + 1
	laptop.WriteFrame(ws.NewFrame(ws.OpText, false, msg[:cut]))
	laptop.WriteFrame(ws.NewPingFrame([]byte("between")))
	laptop.WriteFrame(ws.NewFrame(ws.OpContinuation, false, msg[cut:cut+150]))
	laptop.WriteFrame(ws.NewFrame(ws.OpContinuation, false, nil))
	laptop.WriteFrame(ws.NewFrame(ws.OpContinuation, true, msg[cut+150:]))

	got := phone.Expect("push")
	if !bytes.Equal(got.Raw, msg) {
		t.Fatalf("reassembled message differs:\n sent %s\n got  %s", msg, got.Raw)
	}
	var n int
	laptop.Expect("ack").Field(t, "receivedCount", &n)
	if n != 2 {
		t.Fatalf("receivedCount = %d, want 2", n)
	}
	phone.ExpectQuiet()
}

func TestBinaryFrameIsAnsweredInvalidMessageAndTheConnectionStays(t *testing.T) {
	s := relaytest.Start(t)
	laptop := s.Dial(t, "alice", "laptop")
	phone := s.Dial(t, "alice", "phone")
	laptop.Bind()
	phone.Bind()

	// A push that would be valid as text is refused as binary.
	b, err := json.Marshal(laptop.Envelope("push", map[string]any{"events": []any{laptop.Event("binary")}}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), relaytest.Timeout)
	defer cancel()
	if err := laptop.Conn.Write(ctx, websocket.MessageBinary, b); err != nil {
		t.Fatal(err)
	}
	laptop.ExpectError("invalid_message")
	phone.ExpectQuiet()

	// Still open and still a peer: the next text push goes through.
	sent := laptop.Push(laptop.Event("text"))
	if got := phone.Expect("push"); !bytes.Equal(got.Raw, sent) {
		t.Fatalf("relayed bytes differ:\n sent %s\n got  %s", sent, got.Raw)
	}
	laptop.Expect("ack")
}

func TestMessagesOverTheRateAreDroppedWithRateLimitedUntilTheBucketRefills(t *testing.T) {
	t.Parallel() // waits on timers; runs alongside the other waiting tests
	s := relaytest.Start(t, relaytest.WithLimits(func(c *transport.Config) {
		c.Actors.Rate = 1
		c.Actors.RateBurst = 3
	}))
	laptop := s.Dial(t, "alice", "laptop")
	phone := s.Dial(t, "alice", "phone")
	phone.Bind()
	laptop.Bind() // takes one of laptop's three tokens

	// Six pushes at once: the two tokens left let two through (a third
	// only if a second passed meanwhile), and every other one is dropped.
	var sent [][]byte
	for range 6 {
		sent = append(sent, laptop.Push(laptop.Event("burst")))
	}
	var acked [][]byte
	dropped := 0
	for i := range sent {
		switch m := laptop.Recv(); {
		case m.Type == "ack":
			acked = append(acked, sent[i])
		case m.Type == "error" && m.Code == "rate_limited":
			dropped++
		default:
			t.Fatalf("answer to push %d: got %s, want an ack or a rate_limited error", i, m.Raw)
		}
	}
	if len(acked) < 2 || dropped < 3 {
		t.Fatalf("%d pushes acked and %d rate limited, want at least 2 acked and 3 rate limited", len(acked), dropped)
	}
	if got := s.Metric(t, "livestore_relay_dropped_messages_total", "reason", "rate_limited"); got != float64(dropped) {
		t.Fatalf("rate_limited drops metric = %v, want %d", got, dropped)
	}
	// Only the acked pushes were relayed, in order.
	for i, b := range acked {
		if got := phone.Expect("push"); !bytes.Equal(got.Raw, b) {
			t.Fatalf("relayed push %d:\n got  %s\n want %s", i, got.Raw, b)
		}
	}
	phone.ExpectQuiet()

	// Once the bucket refills, a push goes through again.
	var through []byte
	relaytest.Eventually(t, 5*time.Second, "a push to be accepted after the rate limit", func() bool {
		b := laptop.Push(laptop.Event("later"))
		switch m := laptop.Recv(); {
		case m.Type == "ack":
			through = b
			return true
		case m.Type == "error" && m.Code == "rate_limited":
			return false
		default:
			t.Fatalf("got %s, want an ack or a rate_limited error", m.Raw)
			return false
		}
	})
	if got := phone.Expect("push"); !bytes.Equal(got.Raw, through) {
		t.Fatalf("relayed push after refill:\n got  %s\n want %s", got.Raw, through)
	}
	phone.ExpectQuiet()
}

func TestDefaultMessageLimitIsOneMebibyte(t *testing.T) {
	s := relaytest.Start(t)
	laptop := s.DialRaw(t, "alice", "laptop")
	phone := s.Dial(t, "alice", "phone")
	laptop.Bind()
	phone.Bind()
	b := limPushOfSize(t, laptop, 1<<20)
	laptop.SendText(b)
	if got := phone.Expect("push"); !bytes.Equal(got.Raw, b) {
		t.Fatalf("a push of exactly 1 MiB was altered (%d bytes relayed)", len(got.Raw))
	}
	laptop.Expect("ack")
	laptop.WriteHeader(ws.Header{Fin: true, OpCode: ws.OpText, Length: 1<<20 + 1})
	laptop.ExpectClose(ws.StatusMessageTooBig)
}

func TestDefaultRateLetsABurstOf400ThroughAndLimitsWhatFollows(t *testing.T) {
	const burst, more = 399, 800 // the bind takes the 400th token
	s := relaytest.Start(t)
	laptop := s.Dial(t, "alice", "laptop")
	laptop.Bind()
	answers := delivReadN(laptop, burst+more)
	for range burst + more {
		laptop.Push(laptop.Event(nil))
	}
	msgs := delivWait(t, answers)
	limited := 0
	for i, m := range msgs {
		switch {
		case m.Type == "ack":
		case m.Type == "error" && m.Code == "rate_limited" && i >= burst:
			limited++
		default:
			t.Fatalf("answer %d: got %s", i, m.Raw)
		}
	}
	// The 800 after the burst are written in far less than the 4 s the
	// default rate of 200/s would need to refill for them.
	if limited == 0 {
		t.Fatalf("none of %d pushes beyond the burst was rate limited", more)
	}
}
