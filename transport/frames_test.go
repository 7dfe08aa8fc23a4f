package transport

import (
	"bytes"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/livestore-relay/livestore-relay/actors"
	"github.com/livestore-relay/livestore-relay/transport/wsframe"
)

// fakeSession records what the parser tells a session.
type fakeSession struct {
	closing bool
	texts   [][]byte
	pings   int
	peer    []uint16
}

func (s *fakeSession) Touch(time.Time)            {}
func (s *fakeSession) Closing() bool              { return s.closing }
func (s *fakeSession) Text(b []byte, _ time.Time) { s.texts = append(s.texts, b) }
func (s *fakeSession) Binary()                    {}
func (s *fakeSession) Ping([]byte, time.Time)     { s.pings++ }
func (s *fakeSession) Pong(time.Time)             {}
func (s *fakeSession) PeerClose(code uint16)      { s.peer = append(s.peer, code) }

func masked(op ws.OpCode, fin bool, p []byte) []byte {
	var b bytes.Buffer
	f := ws.NewFrame(op, fin, append([]byte(nil), p...))
	_ = ws.WriteFrame(&b, ws.MaskFrameInPlace(f))
	return b.Bytes()
}

// FuzzFrameParser feeds arbitrary bytes, cut at arbitrary points, to the
// frame parser both readers share: it must never panic, and it must stop
// reading at the same byte however the bytes are cut.
func FuzzFrameParser(f *testing.F) {
	push := []byte(`{"type":"push","clientId":"c","sessionId":"s","timestamp":1,"payload":{"events":[]}}`)
	f.Add(masked(ws.OpText, true, push), uint8(3))
	f.Add(append(masked(ws.OpText, false, push[:10]), masked(ws.OpContinuation, true, push[10:])...), uint8(7))
	f.Add(masked(ws.OpPing, true, []byte("hi")), uint8(1))
	f.Add(masked(ws.OpClose, true, []byte{0x03, 0xe8}), uint8(2))
	f.Add(masked(ws.OpBinary, true, []byte{1, 2, 3}), uint8(5))
	f.Add([]byte{0x81, 0xFF, 0, 0, 0, 0, 0, 0, 0x10, 0, 1, 2, 3, 4}, uint8(4))
	f.Add(masked(ws.OpText, true, []byte{0xff, 0xfe}), uint8(1))

	// feed gives in to a fresh parser in chunks of step bytes and reports
	// the reason it stopped with, after the chunk ending at which byte.
	feed := func(in []byte, step int) (reason actors.CloseReason, end int, sess *fakeSession) {
		sess = &fakeSession{}
		p := frameParser{sess: sess, max: 1 << 16}
		now := time.Now()
		for off := 0; off < len(in); off += step {
			end := min(off+step, len(in))
			if r := p.feed(in[off:end], now); r != 0 {
				return r, end, sess
			}
		}
		return 0, len(in), sess
	}
	f.Fuzz(func(t *testing.T, in []byte, cut uint8) {
		step := int(cut)%16 + 1
		// Byte by byte tells the exact byte that ends reading.
		stop1, at, s1 := feed(in, 1)
		stopW, _, sW := feed(in, len(in)+1)
		stopN, end, sN := feed(in, step)
		// The same messages, whatever the cuts.
		for _, s := range []*fakeSession{sW, sN} {
			if len(s.texts) != len(s1.texts) || s.pings != s1.pings {
				t.Fatalf("%d messages and %d pings byte by byte, %d and %d otherwise", len(s1.texts), s1.pings, len(s.texts), s.pings)
			}
			for i := range s.texts {
				if !bytes.Equal(s.texts[i], s1.texts[i]) {
					t.Fatalf("message %d differs with the cuts", i)
				}
			}
		}
		if stopW != stop1 || stopN != stop1 {
			t.Fatalf("stop: byte by byte %v, whole %v, chunks of %d %v", stop1, stopW, step, stopN)
		}
		if want := min((at+step-1)/step*step, len(in)); stop1 != 0 && end != want {
			t.Fatalf("stops at byte %d byte by byte, so with chunks of %d after byte %d; got %d", at, step, want, end)
		}
	})
}

func TestParserAnswersEmptyControlFrames(t *testing.T) {
	sess := &fakeSession{}
	p := frameParser{sess: sess, max: 1 << 16}
	if r := p.feed(masked(ws.OpPing, true, nil), time.Now()); r != 0 {
		t.Fatalf("empty ping: closes with %v", r)
	}
	if sess.pings != 1 {
		t.Fatalf("empty ping reached the session %d times, want once", sess.pings)
	}
	if r := p.feed(masked(ws.OpClose, true, nil), time.Now()); r != actors.ClosePeer {
		t.Fatalf("empty close: got %v, want the peer's close", r)
	}
	if len(sess.peer) != 1 || sess.peer[0] != 0 {
		t.Fatalf("peer close codes %v, want [0]", sess.peer)
	}
}

func TestParserBufferGrowsWithTheBytesThatArrive(t *testing.T) {
	sess := &fakeSession{}
	p := frameParser{sess: sess, max: 1 << 20}
	payload := bytes.Repeat([]byte("a"), 1<<20)
	frame := masked(ws.OpText, true, payload)
	hdr := wsframe.HeaderSize(frame[0], frame[1])
	// The header and a trickle of the payload.
	if r := p.feed(frame[:hdr+100], time.Now()); r != 0 {
		t.Fatalf("closes with %v", r)
	}
	if c := cap(p.msg); c > 2*msgGrowMin {
		t.Fatalf("after a 1 MiB header and 100 bytes the buffer holds %d bytes", c)
	}
	for off := hdr + 100; off < len(frame); off += 1000 {
		if r := p.feed(frame[off:min(off+1000, len(frame))], time.Now()); r != 0 {
			t.Fatalf("closes with %v", r)
		}
		if received := off - hdr; cap(p.msg) > 2*(received+1000)+msgGrowMin {
			t.Fatalf("buffer of %d bytes after %d received", cap(p.msg), received)
		}
	}
	if len(sess.texts) != 1 || !bytes.Equal(sess.texts[0][wsframe.HeaderRoom:], payload) {
		t.Fatalf("message not delivered intact")
	}
}

func TestParserWholeFrameGetsAnExactBuffer(t *testing.T) {
	sess := &fakeSession{}
	p := frameParser{sess: sess, max: 1 << 20}
	payload := bytes.Repeat([]byte("b"), 300)
	if r := p.feed(masked(ws.OpText, true, payload), time.Now()); r != 0 {
		t.Fatalf("closes with %v", r)
	}
	if len(sess.texts) != 1 || cap(sess.texts[0]) != wsframe.HeaderRoom+len(payload) {
		t.Fatalf("got %d messages, buffer of %d bytes", len(sess.texts), cap(sess.texts[0]))
	}
}

func TestParserBoundsFragmentsPerMessage(t *testing.T) {
	p := frameParser{sess: &fakeSession{}, max: 1 << 20}
	in := masked(ws.OpText, false, nil)
	for range MaxFragments - 1 {
		in = append(in, masked(ws.OpContinuation, false, nil)...)
	}
	if r := p.feed(in, time.Now()); r != 0 {
		t.Fatalf("%d fragments: closes with %v", MaxFragments, r)
	}
	if r := p.feed(masked(ws.OpContinuation, true, nil), time.Now()); r != actors.CloseTooBig {
		t.Fatalf("fragment %d: got %v, want too big", MaxFragments+1, r)
	}
}
