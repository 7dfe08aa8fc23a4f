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
// frame parser both readers share: it must never panic, and a stream that
// asked to stop must stay stopped.
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
	f.Fuzz(func(t *testing.T, in []byte, cut uint8) {
		adm, err := sys.Admit(context.Background(), "fuzz")
		if err != nil {
			t.Fatal(err)
		}
		sess := sys.Open(adm, nullSocket{}, actors.ConnInfo{})
		defer sess.Done()
		p := frameParser{sess: sess, max: 1 << 16}
		step := int(cut)%16 + 1
		now := time.Now()
		stopped := false
		for len(in) > 0 {
			n := min(step, len(in))
			if p.feed(in[:n], now) {
				stopped = true
				break
			}
			in = in[n:]
		}
		if stopped && p.msg != nil && !p.in {
			t.Fatal("a message buffer outlived its message")
		}
	})
}
