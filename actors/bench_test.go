package actors

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/livestore-relay/livestore-relay/transport/wsframe"
)

// countingSocket stands in for a socket in benchmarks of the routing layer
// alone: it counts frames and signals when a target is reached.
type countingSocket struct {
	frames atomic.Int64
	target atomic.Int64
	done   chan struct{}
}

func (s *countingSocket) Write(f [][]byte) (int, error) {
	n := s.frames.Add(int64(len(f)))
	if t := s.target.Load(); t > 0 && n >= t {
		select {
		case s.done <- struct{}{}:
		default:
		}
	}
	b := 0
	for _, x := range f {
		b += len(x)
	}
	return b, nil
}
func (s *countingSocket) Wait(_ bool, ready func(error))   { go ready(nil) }
func (s *countingSocket) Shut()                            {}
func (s *countingSocket) CloseFrame(uint16, string) []byte { return nil }
func (s *countingSocket) Close() error                     { return nil }
func (s *countingSocket) RemoteAddr() string               { return "bench" }

func newBenchSystem(b testing.TB) *System {
	sys, err := NewSystem(Config{Logger: zerolog.New(io.Discard), Metrics: NewMetrics(prometheus.NewRegistry()),
		Rate: 1e12, RateBurst: 1 << 30, SendQueueMessages: 1 << 30, SendQueueBytes: 1 << 40, MaxConnsPerUser: 1000})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(sys.Shutdown)
	return sys
}

// openBound opens n connections of one user, each bound (and joined, when
// join names a store) by a pull, and waits for each answer.
func openBound(tb testing.TB, sys *System, n int, store string) ([]*countingSocket, []*Session) {
	tb.Helper()
	socks := make([]*countingSocket, n)
	sessions := make([]*Session, n)
	payload := `{}`
	if store != "" {
		payload = `{"storeId":"` + store + `","head":{"eventNumber":0}}`
	}
	for i := range socks {
		socks[i] = &countingSocket{done: make(chan struct{}, 1)}
		adm, err := sys.Admit(context.Background(), "alice")
		if err != nil {
			tb.Fatal(err)
		}
		sessions[i] = sys.Open(adm, socks[i], ConnInfo{})
		socks[i].target.Store(1)
		sessions[i].Text(frameOf(fmt.Sprintf(`{"type":"pull","clientId":"c%d","sessionId":"s%d","timestamp":1,"payload":%s}`, i, i, payload)), time.Now())
		<-socks[i].done
	}
	return socks, sessions
}

// expectFrames arms every socket to count want frames from now on.
func expectFrames(socks []*countingSocket, want int64) {
	for _, s := range socks {
		s.frames.Store(0)
		s.target.Store(want)
	}
}

// awaitFrames waits until every socket has written the frames expectFrames
// armed it for.
func awaitFrames(tb testing.TB, socks []*countingSocket, want int64, limit time.Duration) {
	tb.Helper()
	for _, s := range socks {
		select {
		case <-s.done:
		case <-time.After(limit):
			tb.Fatalf("only %d of %d frames written", s.frames.Load(), want)
		}
	}
}

func frameOf(msg string) []byte {
	buf := make([]byte, wsframe.HeaderRoom+len(msg))
	copy(buf[wsframe.HeaderRoom:], msg)
	return buf
}

// BenchmarkRoomFanOut measures one push read by the session, routed by the
// room to n peers, and written by each connection actor; allocations are
// the routing layer's own per push.
func BenchmarkRoomFanOut(b *testing.B) {
	const event = `{"eventName":"todo.created","eventNumber":1,"clientId":"c0","sessionId":"s0","timestamp":1733644800000,"data":{"id":"3f1c","text":"Buy milk and eggs on the way home from work","completed":false}}`
	for _, n := range []int{1, 4, 16, 64} {
		b.Run(fmt.Sprintf("peers=%d", n), func(b *testing.B) {
			sys := newBenchSystem(b)
			socks, sessions := openBound(b, sys, n+1, "")
			push := fmt.Sprintf(`{"type":"push","clientId":"c0","sessionId":"s0","timestamp":1733644800000,"payload":{"events":[%s]}}`, event)
			frames := make([][]byte, b.N)
			for i := range frames {
				frames[i] = frameOf(push)
			}
			// Each push is one frame on every socket: its ack to the
			// sender, the push itself to each peer.
			expectFrames(socks, int64(b.N))
			b.SetBytes(int64(len(push)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				sessions[0].Text(frames[i], time.Now())
			}
			awaitFrames(b, socks, int64(b.N), 30*time.Second)
		})
	}
}
