package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/livestore-relay/livestore-relay/test/relaytest"
	"github.com/livestore-relay/livestore-relay/transport"
)

// orderPush is one push as a device saw it: its events' numbers and who
// sent it.
type orderPush struct {
	first, last int64
	from        string
}

// orderDevice pushes to one store from its own goroutine, always on the
// head it knows, and records what it had acked and what it was sent.
type orderDevice struct {
	c        *relaytest.Client
	head     int64
	acked    []orderPush
	received []orderPush
	err      error
	left     bool // closed its connection midway: owed nothing after
}

func (d *orderDevice) send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), relaytest.Timeout)
	defer cancel()
	return d.c.Conn.Write(ctx, websocket.MessageText, b)
}

// handle takes one message; it reports whether it answered the device's
// own push (an ack or a head_mismatch).
func (d *orderDevice) handle(m relaytest.Msg, n int) (answered bool, err error) {
	switch {
	case m.Type == "push":
		var p struct {
			Events []struct {
				EventNumber int64 `json:"eventNumber"`
			} `json:"events"`
		}
		if err := json.Unmarshal(m.Payload, &p); err != nil || len(p.Events) == 0 {
			return false, fmt.Errorf("forwarded push %s", m.Raw)
		}
		rec := orderPush{p.Events[0].EventNumber, p.Events[len(p.Events)-1].EventNumber, m.ClientID}
		d.received = append(d.received, rec)
		d.head = max(d.head, rec.last)
		return false, nil
	case m.Type == "ack":
		var p struct {
			Head storeHead `json:"head"`
		}
		if err := json.Unmarshal(m.Payload, &p); err != nil || p.Head.EventNumber != d.head+int64(n) || p.Head.ClientID != d.c.ClientID {
			return false, fmt.Errorf("ack %s for a push of %d on %d", m.Raw, n, d.head)
		}
		d.acked = append(d.acked, orderPush{d.head + 1, d.head + int64(n), d.c.ClientID})
		d.head = p.Head.EventNumber
		return true, nil
	case m.Type == "error" && m.Code == "head_mismatch":
		var p struct {
			Head storeHead `json:"head"`
		}
		if err := json.Unmarshal(m.Payload, &p); err != nil {
			return false, err
		}
		// Every push that made this head was forwarded to us before this
		// answer: the room queues in order.
		if p.Head.EventNumber != d.head {
			return false, fmt.Errorf("head_mismatch names %d, but the pushes received end at %d", p.Head.EventNumber, d.head)
		}
		return true, nil
	}
	return false, fmt.Errorf("unexpected %s", m.Raw)
}

// run pushes until pushes are acked, or until leaveAfter are (when above
// 0), then closes the connection.
func (d *orderDevice) run(rng *rand.Rand, pushes, leaveAfter int) {
	for len(d.acked) < pushes {
		if leaveAfter > 0 && len(d.acked) == leaveAfter {
			d.left = true
			d.c.Close()
			return
		}
		n := 1 + rng.IntN(3)
		err := d.send(d.c.Envelope("push", map[string]any{"storeId": "st", "events": storeEvents(d.c, d.head, n)}))
		for answered := false; err == nil && !answered; {
			var m relaytest.Msg
			if m, err = d.c.TryRecv(relaytest.Timeout); err == nil {
				answered, err = d.handle(m, n)
			}
		}
		if err != nil {
			d.err = err
			return
		}
	}
}

// TestStoreOrderUnderConcurrentPushes has several devices push to one
// store at once, each on the head it knows and catching up on
// head_mismatch; one of them leaves midway, and one more device only
// watches. Whatever the interleaving, the acked pushes must form one chain
// without gaps or repeats, and every device that stayed must have been
// sent exactly the others' accepted pushes, in that order.
func TestStoreOrderUnderConcurrentPushes(t *testing.T) {
	for _, durable := range []bool{false, true} {
		t.Run(fmt.Sprint("durable=", durable), func(t *testing.T) {
			dir := ""
			if durable {
				dir = t.TempDir()
			}
			s := relaytest.Start(t, relaytest.WithLimits(func(c *transport.Config) {
				c.Actors.Rate, c.Actors.RateBurst = 1e6, 1e6
				c.Actors.StateDir = dir
			}))
			const devices, pushes = 5, 25
			ds := make([]*orderDevice, devices+1) // the last one only watches
			for i := range ds {
				c := s.Dial(t, "alice", fmt.Sprint("device-", i))
				storeJoin(t, c, "st", storeHead{})
				ds[i] = &orderDevice{c: c}
			}
			seed := uint64(time.Now().UnixNano())
			t.Logf("seed %d", seed)
			leaver := rand.New(rand.NewPCG(seed, 99))
			leaveAfter := 1 + leaver.IntN(pushes-1)
			var wg sync.WaitGroup
			for i, d := range ds[:devices] {
				wg.Add(1)
				go func() {
					defer wg.Done()
					leave := 0
					if i == 0 {
						leave = leaveAfter
					}
					d.run(rand.New(rand.NewPCG(seed, uint64(i))), pushes, leave)
				}()
			}
			wg.Wait()

			var all []orderPush
			for _, d := range ds {
				if d.err != nil {
					t.Fatalf("%s: %v", d.c.ClientID, d.err)
				}
				all = append(all, d.acked...)
			}
			slices.SortFunc(all, func(a, b orderPush) int { return int(a.first - b.first) })
			next := int64(1)
			for _, p := range all {
				if p.first != next {
					t.Fatalf("acked chain: push %+v where event %d was due", p, next)
				}
				next = p.last + 1
			}
			for _, d := range ds {
				if d.left {
					continue
				}
				var want []orderPush
				for _, p := range all {
					if p.from != d.c.ClientID {
						want = append(want, p)
					}
				}
				for len(d.received) < len(want) {
					m, err := d.c.TryRecv(relaytest.Timeout)
					if err != nil {
						t.Fatalf("%s: %d of %d pushes received: %v", d.c.ClientID, len(d.received), len(want), err)
					}
					if _, err := d.handle(m, 0); err != nil {
						t.Fatalf("%s: %v", d.c.ClientID, err)
					}
				}
				if !slices.Equal(d.received, want) {
					t.Fatalf("%s received %v\nwant %v", d.c.ClientID, d.received, want)
				}
				d.c.ExpectQuiet()
			}
			t.Logf("%d pushes accepted, %d rejected with head_mismatch", len(all),
				int(s.Metric(t, "livestore_relay_store_pushes_total", "result", "head_mismatch")))
		})
	}
}
