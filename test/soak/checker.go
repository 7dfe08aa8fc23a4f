package soak

import (
	"math/bits"
	"sync/atomic"
)

// bitset is a growable set of per-sender sequence numbers. Sequence numbers
// start at 1 and are dense, so a bitset costs one bit per push sent, which
// stays small even for long runs (a million pushes is 125 KiB).
type bitset []uint64

func (b *bitset) set(n uint64) {
	w := int(n / 64)
	if w >= len(*b) {
		grown := make(bitset, w+1, max(2*(w+1), 4))
		copy(grown, *b)
		*b = grown
	}
	(*b)[w] |= 1 << (n % 64)
}

func (b bitset) has(n uint64) bool {
	w := int(n / 64)
	return w < len(b) && b[w]&(1<<(n%64)) != 0
}

func (b bitset) count() int64 {
	var n int
	for _, w := range b {
		n += bits.OnesCount64(w)
	}
	return int64(n)
}

// andNotCount is the size of a \ b.
func andNotCount(a, b bitset) int64 {
	var n int
	for i, w := range a {
		if i < len(b) {
			w &^= b[i]
		}
		n += bits.OnesCount64(w)
	}
	return int64(n)
}

// outcome classifies one arrival of a push at one receiver.
type outcome int

const (
	outcomeInOrder   outcome = iota // first arrival, after everything seen before from that sender
	outcomeReordered                // first arrival, but a later push of the same sender came first
	outcomeDuplicate                // arrived before
	outcomeForeign                  // another user's push, or from a device this user does not have
	outcomeSelf                     // the receiver's own push came back to it
)

// stream is what one receiver has got from one sender.
type stream struct {
	got bitset
	max uint64 // highest sequence number seen so far
}

// observe records the arrival of push seq. A gap (seq jumping past max+1) is
// not reordering by itself: the missing pushes may simply be lost, which the
// final tally counts. Reordering is an arrival below what was already seen.
func (s *stream) observe(seq uint64) outcome {
	if s.got.has(seq) {
		return outcomeDuplicate
	}
	s.got.set(seq)
	if seq < s.max {
		return outcomeReordered
	}
	s.max = seq
	return outcomeInOrder
}

// stamp is what the tool writes into every event's data so that a receiver
// can tell who sent it, in what order, and when.
type stamp struct {
	User   string `json:"u"`
	Device int    `json:"d"`
	Client string `json:"c"`
	Seq    uint64 `json:"n"`
	Index  int    `json:"i"`
	SentNs int64  `json:"t"`
	// Number is the event's eventNumber, read from the event itself.
	Number int64 `json:"-"`
}

// book holds one user's delivery expectations. The acked set of a sender is
// written only by the goroutine that reads the sender's socket (acks arrive
// there) and the streams of a receiver only by the goroutine that reads the
// receiver's socket, so no lock is needed; tally runs after both have ended.
type book struct {
	user      string
	clientIDs []string
	acked     []bitset        // by sender device
	sentSeq   []atomic.Uint64 // by sender device: the last sequence number sent
	streams   [][]stream      // [receiver][sender]
}

func newBook(user string, clientIDs []string) *book {
	b := &book{
		user:      user,
		clientIDs: clientIDs,
		acked:     make([]bitset, len(clientIDs)),
		sentSeq:   make([]atomic.Uint64, len(clientIDs)),
		streams:   make([][]stream, len(clientIDs)),
	}
	for i := range b.streams {
		b.streams[i] = make([]stream, len(clientIDs))
	}
	return b
}

// sent records that sender is about to send push seq.
func (b *book) sent(sender int, seq uint64) { b.sentSeq[sender].Store(seq) }

// ack records that sender's push seq was acknowledged.
func (b *book) ack(sender int, seq uint64) { b.acked[sender].set(seq) }

// deliver records that receiver got the push stamped st and classifies it.
func (b *book) deliver(receiver int, st stamp) outcome {
	switch {
	case st.User != b.user, st.Device < 0, st.Device >= len(b.clientIDs), b.clientIDs[st.Device] != st.Client:
		return outcomeForeign
	case st.Seq == 0 || st.Seq > b.sentSeq[st.Device].Load():
		// Not a push this run's sender made; also keeps a bogus number
		// from sizing a bitset.
		return outcomeForeign
	case st.Device == receiver:
		return outcomeSelf
	}
	return b.streams[receiver][st.Device].observe(st.Seq)
}

// tally is the end-of-run account of deliveries.
type tally struct {
	Expected int64 // acked pushes × receivers that had to get them
	Matched  int64 // of those, delivered
	Lost     int64 // of those, never delivered
	Unacked  int64 // pushes delivered that their sender never saw acked
}

func (t *tally) add(o tally) {
	t.Expected += o.Expected
	t.Matched += o.Matched
	t.Lost += o.Lost
	t.Unacked += o.Unacked
}

// tally compares what each live receiver got with what each sender had
// acked. live[r] says receiver r was bound before traffic began and stayed
// connected to the end; a receiver the server disconnected owes nothing (its
// close is reported on its own), but every sender's acked pushes count, even
// a sender that was disconnected later.
func (b *book) tally(live []bool) tally {
	var t tally
	for s := range b.clientIDs {
		acked := b.acked[s].count()
		for r := range b.clientIDs {
			if r == s || !live[r] {
				continue
			}
			got := b.streams[r][s].got
			lost := andNotCount(b.acked[s], got)
			t.Expected += acked
			t.Lost += lost
			t.Matched += acked - lost
			t.Unacked += andNotCount(got, b.acked[s])
		}
	}
	return t
}
