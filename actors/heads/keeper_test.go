package heads

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/livestore-relay/livestore-relay/protocol"
)

func h(n int64, c, s string) protocol.Head {
	return protocol.Head{EventNumber: n, ClientID: c, SessionID: s}
}

func join(k *Keeper, user, store string, a protocol.Head) *Op {
	op := &Op{Kind: Join, User: user, Store: store, Announced: a}
	k.Do(op)
	return op
}

func appendOp(k *Keeper, user, store string, parent int64, next protocol.Head) *Op {
	op := &Op{Kind: Append, User: user, Store: store, Parent: parent, Next: next}
	k.Do(op)
	return op
}

func open(t *testing.T, cfg Config) *Keeper {
	t.Helper()
	k, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k.Close() })
	return k
}

func want(t *testing.T, op *Op, r Result, head protocol.Head) {
	t.Helper()
	if op.Result != r || op.Head != head {
		t.Fatalf("%v on %q: got %v %+v, want %v %+v", op.Kind, op.Store, op.Result, op.Head, r, head)
	}
}

func TestJoinTable(t *testing.T) {
	for _, dir := range []string{"", t.TempDir()} {
		k := open(t, Config{Dir: dir})
		want(t, join(k, "u", "s", h(0, "x", "y")), Created, h(0, "", ""))
		want(t, join(k, "u", "s", h(0, "", "")), Unchanged, h(0, "", ""))
		want(t, join(k, "u", "s", h(3, "a", "1")), Adopted, h(3, "a", "1"))
		want(t, join(k, "u", "s", h(3, "b", "1")), Conflict, h(3, "a", "1"))
		want(t, join(k, "u", "s", h(3, "a", "2")), Conflict, h(3, "a", "1"))
		want(t, join(k, "u", "s", h(3, "a", "1")), Unchanged, h(3, "a", "1"))
		want(t, join(k, "u", "s", h(1, "z", "z")), Unchanged, h(3, "a", "1"))
		want(t, join(k, "v", "s", h(5, "q", "q")), Created, h(5, "q", "q")) // users are apart
	}
}

func TestAppend(t *testing.T) {
	k := open(t, Config{})
	join(k, "u", "s", h(0, "", ""))
	want(t, appendOp(k, "u", "s", 0, h(2, "a", "1")), Accepted, h(2, "a", "1"))
	want(t, appendOp(k, "u", "s", 0, h(1, "b", "1")), Mismatch, h(2, "a", "1"))
	want(t, appendOp(k, "u", "s", 3, h(4, "b", "1")), Mismatch, h(2, "a", "1"))
	want(t, appendOp(k, "u", "s", 2, h(3, "b", "1")), Accepted, h(3, "b", "1"))
	want(t, appendOp(k, "u", "other", 0, h(1, "b", "1")), Mismatch, h(0, "", ""))
	op := &Op{Kind: Read, User: "u", Store: "s"}
	k.Do(op)
	want(t, op, Unchanged, h(3, "b", "1"))
}

func TestMaxStoresPerUser(t *testing.T) {
	dir := t.TempDir()
	k := open(t, Config{Dir: dir, MaxStoresPerUser: 2})
	join(k, "u", "a", h(0, "", ""))
	join(k, "u", "b", h(0, "", ""))
	want(t, join(k, "u", "c", h(0, "", "")), LimitExceeded, h(0, "", ""))
	want(t, join(k, "u", "a", h(1, "x", "y")), Adopted, h(1, "x", "y")) // known stores still join
	want(t, join(k, "w", "c", h(0, "", "")), Created, h(0, "", ""))
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	k2 := open(t, Config{Dir: dir, MaxStoresPerUser: 2})
	want(t, join(k2, "u", "c", h(0, "", "")), LimitExceeded, h(0, "", "")) // restored heads count
}

func TestRestart(t *testing.T) {
	dir := t.TempDir()
	k := open(t, Config{Dir: dir})
	join(k, "u\x00", "s\xff", h(0, "", ""))
	appendOp(k, "u\x00", "s\xff", 0, h(7, "dev", ""))
	join(k, "v", "", h(9, "", "sess"))
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	k2 := open(t, Config{Dir: dir})
	if k2.Restored() != 2 {
		t.Errorf("restored %d heads, want 2", k2.Restored())
	}
	want(t, join(k2, "u\x00", "s\xff", h(1, "", "")), Unchanged, h(7, "dev", ""))
	want(t, join(k2, "v", "", h(9, "", "sess")), Unchanged, h(9, "", "sess"))
}

func TestClosedKeeperFails(t *testing.T) {
	k := open(t, Config{})
	_ = k.Close()
	want(t, join(k, "u", "s", h(0, "", "")), Failed, h(0, "", ""))
}

// TestConcurrentAppends races writers on one store through group commits:
// the accepted appends form one chain without gaps or repeats.
func TestConcurrentAppends(t *testing.T) {
	dir := t.TempDir()
	k := open(t, Config{Dir: dir})
	join(k, "u", "s", h(0, "", ""))
	const writers, per = 8, 40
	var mu sync.Mutex
	accepted := map[int64]string{}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			op := &Op{Kind: Append, User: "u", Store: "s"}
			name := fmt.Sprint("w", w)
			var head int64
			for done := 0; done < per; {
				op.Parent, op.Next = head, h(head+1, name, "s")
				k.Do(op)
				switch op.Result {
				case Accepted:
					mu.Lock()
					if prev, dup := accepted[head+1]; dup {
						t.Errorf("event %d accepted twice (%s, %s)", head+1, prev, name)
					}
					accepted[head+1] = name
					mu.Unlock()
					head++
					done++
				case Mismatch:
					head = op.Head.EventNumber
				default:
					t.Errorf("result %v", op.Result)
					return
				}
			}
		}()
	}
	wg.Wait()
	if len(accepted) != writers*per {
		t.Fatalf("%d accepted, want %d", len(accepted), writers*per)
	}
	for n := int64(1); n <= writers*per; n++ {
		if accepted[n] == "" {
			t.Fatalf("gap at %d", n)
		}
	}
}

// TestFailedCommitChangesNothing: when the state file cannot take a
// commit, every op of the batch fails and the heads stay as they were.
func TestFailedCommitChangesNothing(t *testing.T) {
	k := open(t, Config{Dir: t.TempDir()})
	join(k, "u", "s", h(0, "", ""))
	appendOp(k, "u", "s", 0, h(1, "a", "1"))
	_ = k.db.db.Close() // the next commit fails
	want(t, appendOp(k, "u", "s", 1, h(2, "a", "1")), Failed, h(0, "", ""))
	want(t, join(k, "u", "new", h(0, "", "")), Failed, h(0, "", ""))
	for store, head := range map[string]protocol.Head{"s": h(1, "a", "1")} {
		op := &Op{Kind: Read, User: "u", Store: store}
		k.Do(op)
		want(t, op, Unchanged, head)
	}
	op := &Op{Kind: Read, User: "u", Store: "new"}
	k.Do(op)
	want(t, op, Unknown, h(0, "", ""))
}

// BenchmarkDurableAppend is one writer appending to one store with a
// state directory: every append is one commit, synced to disk.
func BenchmarkDurableAppend(b *testing.B) {
	k, err := Open(Config{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer k.Close()
	join(k, "u", "s", h(0, "", ""))
	op := &Op{Kind: Append, User: "u", Store: "s"}
	b.ResetTimer()
	for i := range b.N {
		op.Parent, op.Next = int64(i), h(int64(i+1), "device", "session")
		k.Do(op)
		if op.Result != Accepted {
			b.Fatal(op.Result)
		}
	}
}

// BenchmarkDurableAppendParallel has many writers, each on a store of its
// own user, as rooms of different users are: their appends share commits.
func BenchmarkDurableAppendParallel(b *testing.B) {
	k, err := Open(Config{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer k.Close()
	var n atomic.Int64
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		user := fmt.Sprint("u", n.Add(1))
		join(k, user, "s", h(0, "", ""))
		op := &Op{Kind: Append, User: user, Store: "s"}
		var i int64
		for pb.Next() {
			op.Parent, op.Next = i, h(i+1, "device", "session")
			k.Do(op)
			if op.Result != Accepted {
				b.Error(op.Result)
				return
			}
			i++
		}
	})
}
