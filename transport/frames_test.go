package transport

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/livestore-relay/livestore-relay/actors"
)

// nullSocket stands in for the write side, which the parser never touches.
type nullSocket struct{}

func (nullSocket) WriteFrames([][]byte) error      { return nil }
func (nullSocket) WriteClose(uint16, string) error { return nil }
func (nullSocket) Close() error                    { return nil }
func (nullSocket) RemoteAddr() string              { return "fuzz" }

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

	sys, err := actors.NewSystem(actors.Config{Logger: zerolog.New(io.Discard),
		Metrics: actors.NewMetrics(prometheus.NewRegistry()), MaxConnsPerUser: 1 << 30})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(sys.Shutdown)
	open := func(t *testing.T) *actors.Session {
		adm, err := sys.Admit(context.Background(), "fuzz")
		if err != nil {
			t.Fatal(err)
		}
		sess := sys.Open(adm, nullSocket{}, actors.ConnInfo{})
		t.Cleanup(sess.Done)
		return sess
	}
	// feed gives in to a fresh parser in chunks of step bytes and reports
	// whether it asked to stop, and after the chunk ending at which byte.
	feed := func(t *testing.T, in []byte, step int) (stopped bool, end int) {
		p := frameParser{sess: open(t), max: 1 << 16}
		now := time.Now()
		for off := 0; off < len(in); off += step {
			end := min(off+step, len(in))
			if p.feed(in[off:end], now) {
				return true, end
			}
		}
		return false, len(in)
	}
	f.Fuzz(func(t *testing.T, in []byte, cut uint8) {
		step := int(cut)%16 + 1
		// Byte by byte tells the exact byte that ends reading.
		stop1, at := feed(t, in, 1)
		stopW, _ := feed(t, in, len(in)+1)
		stopN, end := feed(t, in, step)
		if stopW != stop1 || stopN != stop1 {
			t.Fatalf("stop: byte by byte %v, whole %v, chunks of %d %v", stop1, stopW, step, stopN)
		}
		if want := min((at+step-1)/step*step, len(in)); stop1 && end != want {
			t.Fatalf("stops at byte %d byte by byte, so with chunks of %d after byte %d; got %d", at, step, want, end)
		}
	})
}
