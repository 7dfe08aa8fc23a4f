package soak

import "testing"

func TestStreamClassifiesArrivals(t *testing.T) {
	var s stream
	seq := []uint64{1, 2, 2, 4, 3, 5, 1, 7}
	want := []outcome{
		outcomeInOrder, outcomeInOrder, outcomeDuplicate, outcomeInOrder,
		outcomeReordered, outcomeInOrder, outcomeDuplicate, outcomeInOrder,
	}
	for i, n := range seq {
		if got := s.observe(n); got != want[i] {
			t.Errorf("arrival %d (seq %d): got %v, want %v", i, n, got, want[i])
		}
	}
	// 6 never came: a gap is loss, not reordering.
	if s.got.has(6) || !s.got.has(7) {
		t.Errorf("got set wrong: has(6)=%v has(7)=%v", s.got.has(6), s.got.has(7))
	}
}

func TestBitset(t *testing.T) {
	var a, b bitset
	for _, n := range []uint64{0, 1, 63, 64, 65, 1000} {
		a.set(n)
	}
	b.set(1)
	b.set(64)
	b.set(5000) // only in b
	if got := a.count(); got != 6 {
		t.Errorf("count = %d, want 6", got)
	}
	if got := andNotCount(a, b); got != 4 {
		t.Errorf("|a \\ b| = %d, want 4", got)
	}
	if got := andNotCount(b, a); got != 1 {
		t.Errorf("|b \\ a| = %d, want 1", got)
	}
	if a.has(2) || !a.has(1000) || a.has(1<<40) {
		t.Error("has is wrong")
	}
}

// sendAll marks seqs 1..n of sender as sent and acked.
func sendAll(b *book, sender int, n uint64, acked func(uint64) bool) {
	for seq := uint64(1); seq <= n; seq++ {
		b.sent(sender, seq)
		if acked == nil || acked(seq) {
			b.ack(sender, seq)
		}
	}
}

func st(user string, dev int, client string, seq uint64) stamp {
	return stamp{User: user, Device: dev, Client: client, Seq: seq}
}

func TestBookCountsEveryKindOfFault(t *testing.T) {
	ids := []string{"dev0", "dev1", "dev2"}
	b := newBook("alice", ids)
	// dev0 sends 1..5, all acked; dev1 sends 1..3, 3 never acked.
	sendAll(b, 0, 5, nil)
	sendAll(b, 1, 3, func(seq uint64) bool { return seq != 3 })

	type arrival struct {
		to   int
		st   stamp
		want outcome
	}
	arrivals := []arrival{
		// dev1 gets dev0's 1, 2, 4, 3 (reordered), 5, and 5 again.
		{1, st("alice", 0, "dev0", 1), outcomeInOrder},
		{1, st("alice", 0, "dev0", 2), outcomeInOrder},
		{1, st("alice", 0, "dev0", 4), outcomeInOrder},
		{1, st("alice", 0, "dev0", 3), outcomeReordered},
		{1, st("alice", 0, "dev0", 5), outcomeInOrder},
		{1, st("alice", 0, "dev0", 5), outcomeDuplicate},
		// dev2 gets dev0's 1, 2, 5: 3 and 4 are lost.
		{2, st("alice", 0, "dev0", 1), outcomeInOrder},
		{2, st("alice", 0, "dev0", 2), outcomeInOrder},
		{2, st("alice", 0, "dev0", 5), outcomeInOrder},
		// dev0 and dev2 get all of dev1's, including the unacked 3.
		{0, st("alice", 1, "dev1", 1), outcomeInOrder},
		{0, st("alice", 1, "dev1", 2), outcomeInOrder},
		{0, st("alice", 1, "dev1", 3), outcomeInOrder},
		{2, st("alice", 1, "dev1", 1), outcomeInOrder},
		{2, st("alice", 1, "dev1", 2), outcomeInOrder},
		{2, st("alice", 1, "dev1", 3), outcomeInOrder},
		// Foreign: another user, an unknown device, a clientId that does
		// not match the index, a number the sender never reached.
		{0, st("bob", 1, "dev1", 1), outcomeForeign},
		{0, st("alice", 7, "dev7", 1), outcomeForeign},
		{0, st("alice", 1, "dev2", 1), outcomeForeign},
		{0, st("alice", 1, "dev1", 4), outcomeForeign},
		{0, st("alice", 1, "dev1", 0), outcomeForeign},
		{0, st("alice", -1, "dev1", 1), outcomeForeign},
		// Its own push relayed back.
		{0, st("alice", 0, "dev0", 1), outcomeSelf},
	}
	for i, a := range arrivals {
		if got := b.deliver(a.to, a.st); got != a.want {
			t.Errorf("arrival %d (%+v to dev%d): got %v, want %v", i, a.st, a.to, got, a.want)
		}
	}

	got := b.tally([]bool{true, true, true})
	// Expected: dev0's 5 acked × 2 receivers + dev1's 2 acked × 2 receivers.
	want := tally{Expected: 14, Matched: 12, Lost: 2, Unacked: 2}
	if got != want {
		t.Errorf("tally = %+v, want %+v", got, want)
	}

	// A receiver the server disconnected owes nothing: without dev2, the
	// two pushes it lost no longer count.
	got = b.tally([]bool{true, true, false})
	want = tally{Expected: 7, Matched: 7, Lost: 0, Unacked: 1}
	if got != want {
		t.Errorf("tally without dev2 = %+v, want %+v", got, want)
	}
}

func TestBookCleanRun(t *testing.T) {
	ids := []string{"a", "b", "c", "d"}
	b := newBook("u", ids)
	const n = 300
	for s := range ids {
		sendAll(b, s, n, nil)
	}
	for seq := uint64(1); seq <= n; seq++ {
		for s := range ids {
			for r := range ids {
				if r != s {
					if got := b.deliver(r, st("u", s, ids[s], seq)); got != outcomeInOrder {
						t.Fatalf("seq %d %d->%d: %v", seq, s, r, got)
					}
				}
			}
		}
	}
	got := b.tally([]bool{true, true, true, true})
	want := tally{Expected: 4 * 3 * n, Matched: 4 * 3 * n}
	if got != want {
		t.Errorf("tally = %+v, want %+v", got, want)
	}
}

func TestJudge(t *testing.T) {
	code := 0
	clean := Result{Connections: 8, Errors: map[string]int64{}, Closes: map[string]int64{}, Anomalies: map[string]int64{}, RelayExitCode: &code}
	r := clean
	r.judge(8)
	if !r.Pass || len(r.Failures) != 0 {
		t.Fatalf("clean run judged %v: %v", r.Pass, r.Failures)
	}
	bad := []func(*Result){
		func(r *Result) { r.Lost = 1 },
		func(r *Result) { r.Duplicated = 1 },
		func(r *Result) { r.Reordered = 1 },
		func(r *Result) { r.Foreign = 1 },
		func(r *Result) { r.Unacked = 1 },
		func(r *Result) { r.PeerPullsUnanswered = 1 },
		func(r *Result) { r.ConnectErrors = 1 },
		func(r *Result) { r.Connections = 7 },
		func(r *Result) { r.Closes = map[string]int64{"4003": 1} },
		func(r *Result) { r.Errors = map[string]int64{"rate_limited": 2} },
		func(r *Result) { r.Anomalies = map[string]int64{"unmatched_ack": 1} },
		func(r *Result) { c := 1; r.RelayExitCode = &c },
	}
	for i, spoil := range bad {
		r := clean
		spoil(&r)
		r.judge(8)
		if r.Pass || len(r.Failures) != 1 {
			t.Errorf("case %d: pass=%v failures=%v, want one failure", i, r.Pass, r.Failures)
		}
	}
}
