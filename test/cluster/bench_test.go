package cluster

import (
	"slices"
	"testing"
	"time"

	"github.com/livestore-relay/livestore-relay/test/relaytest"
)

// BenchmarkPushLatency measures, one push at a time, the time from a push
// sent by one device to its arrival at another device of the same user, and
// reports its percentiles: on a single relay, and in a cluster of three
// with the sender on the room's node and the recipient on another (one
// hop), and with both on nodes that do not hold the room (two hops).
func BenchmarkPushLatency(b *testing.B) {
	fast := []string{"--rate", "1000000", "--rate-burst", "1000000"}
	b.Run("single", func(b *testing.B) {
		srv, _ := relaytest.StartBinary(b, secretEnv(), fast...)
		measure(b, srv.Dial(b, "u", "a"), srv.Dial(b, "u", "b"))
	})
	b.Run("cluster-one-hop", func(b *testing.B) {
		nodes := startCluster(b, 3, fast...)
		first := nodes[0].Dial(b, "u", "probe")
		first.Bind()
		owner := ownerOf(b, nodes)
		measure(b, nodes[owner].Dial(b, "u", "a"), nodes[(owner+1)%3].Dial(b, "u", "b"))
	})
	b.Run("cluster-two-hops", func(b *testing.B) {
		nodes := startCluster(b, 3, fast...)
		first := nodes[0].Dial(b, "u", "probe")
		first.Bind()
		owner := ownerOf(b, nodes)
		measure(b, nodes[(owner+1)%3].Dial(b, "u", "a"), nodes[(owner+2)%3].Dial(b, "u", "b"))
	})
}

func measure(b *testing.B, a, r *relaytest.Client) {
	a.Bind()
	r.Bind()
	for range 200 { // warm up
		a.Push(a.Event(0))
		r.Expect("push")
		a.Expect("ack")
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		a.Push(a.Event(0))
		r.Expect("push")
		lat = append(lat, time.Since(start))
		a.Expect("ack")
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
