package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/livestore-relay/livestore-relay/test/relaytest"
	"github.com/livestore-relay/livestore-relay/transport"
)

// delivNoRateLimit keeps the per-connection rate limit out of the way of
// tests that push as fast as they can, and the send queue bound too: their
// readers read everything but can fall a thousand messages behind on a
// loaded machine, which the bound would close as a slow consumer (a test
// of the bound sets it back with more).
func delivNoRateLimit(more ...func(*transport.Config)) relaytest.Option {
	return relaytest.WithLimits(func(c *transport.Config) {
		c.Actors.Rate = 1e9
		c.Actors.RateBurst = 1 << 30
		c.Actors.SendQueueMessages = 1 << 20
		c.Actors.SendQueueBytes = 1 << 30
		for _, f := range more {
			f(c)
		}
	})
}

// delivData is the data of the single event of every push these tests send.
type delivData struct {
	User string `json:"user"`
	From string `json:"from"`
	Seq  int    `json:"seq"`
	Last bool   `json:"last,omitempty"`
	Pad  string `json:"pad,omitempty"`
}

// delivPush encodes a push of one event carrying d. The event's timestamp
// is Seq+1, so the ack that answers it names it by lastTimestamp.
func delivPush(t *testing.T, c *relaytest.Client, d delivData) []byte {
	t.Helper()
	ev := c.Event(d)
	ev["timestamp"] = int64(d.Seq) + 1
	b, err := json.Marshal(c.Envelope("push", map[string]any{"events": []any{ev}}))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// delivDecode returns the sender's clientId and the event data of a relayed push.
func delivDecode(t *testing.T, m relaytest.Msg) (string, delivData) {
	t.Helper()
	if m.Type != "push" {
		t.Fatalf("got %.200s, want a push", m.Raw)
	}
	var events []struct {
		Data delivData `json:"data"`
	}
	m.Field(t, "events", &events)
	if len(events) != 1 {
		t.Fatalf("relayed push has %d events, want 1: %.200s", len(events), m.Raw)
	}
	return m.ClientID, events[0].Data
}

// delivAckedSeq checks that m acks exactly one event and returns the Seq of
// the push it answers.
func delivAckedSeq(t *testing.T, m relaytest.Msg) int {
	t.Helper()
	if m.Type != "ack" {
		t.Fatalf("got %.200s, want an ack", m.Raw)
	}
	var n int
	var last int64
	m.Field(t, "receivedCount", &n)
	m.Field(t, "lastTimestamp", &last)
	if n != 1 {
		t.Fatalf("ack %s: receivedCount %d, want 1", m.Raw, n)
	}
	return int(last) - 1
}

type delivReceived struct {
	msgs []relaytest.Msg
	err  error
}

// delivReadN reads n messages from c on another goroutine, so that the
// client keeps reading while the test writes.
func delivReadN(c *relaytest.Client, n int) <-chan delivReceived {
	ch := make(chan delivReceived, 1)
	go func() {
		var r delivReceived
		for len(r.msgs) < n {
			m, err := c.TryRecv(relaytest.Timeout)
			if err != nil {
				r.err = fmt.Errorf("%s: after %d of %d messages: %w", c.ClientID, len(r.msgs), n, err)
				break
			}
			r.msgs = append(r.msgs, m)
		}
		ch <- r
	}()
	return ch
}

// delivReadUntilLast reads from c on another goroutine until it has read a
// push whose data is marked Last.
func delivReadUntilLast(c *relaytest.Client) <-chan delivReceived {
	ch := make(chan delivReceived, 1)
	go func() {
		var r delivReceived
		for {
			m, err := c.TryRecv(relaytest.Timeout)
			if err != nil {
				r.err = fmt.Errorf("%s: after %d messages: %w", c.ClientID, len(r.msgs), err)
				break
			}
			r.msgs = append(r.msgs, m)
			if m.Type == "push" && bytes.Contains(m.Raw, []byte(`"last":true`)) {
				break
			}
		}
		ch <- r
	}()
	return ch
}

// delivWriteAll sends every frame from c on another goroutine.
func delivWriteAll(c *relaytest.Client, frames [][]byte) <-chan error {
	ch := make(chan error, 1)
	go func() {
		for i, b := range frames {
			ctx, cancel := context.WithTimeout(context.Background(), relaytest.Timeout)
			err := c.Conn.Write(ctx, websocket.MessageText, b)
			cancel()
			if err != nil {
				ch <- fmt.Errorf("%s: write %d: %w", c.ClientID, i, err)
				return
			}
		}
		ch <- nil
	}()
	return ch
}

func delivWait(t *testing.T, ch <-chan delivReceived) []relaytest.Msg {
	t.Helper()
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.msgs
}

// delivCheckStream checks that msgs hold, for every sender in want, exactly
// the frames it sent, byte for byte and in the order it sent them, and
// that every other message is an ack (returned in order of arrival).
func delivCheckStream(t *testing.T, who string, msgs []relaytest.Msg, want map[string][][]byte) (acks []relaytest.Msg) {
	t.Helper()
	next := make(map[string]int)
	for _, m := range msgs {
		if m.Type == "ack" {
			acks = append(acks, m)
			continue
		}
		if m.Type != "push" {
			t.Fatalf("%s: got %.200s, want only pushes and acks", who, m.Raw)
		}
		sent, ok := want[m.ClientID]
		if !ok {
			t.Fatalf("%s: got a push from %q, which should not reach it: %.200s", who, m.ClientID, m.Raw)
		}
		i := next[m.ClientID]
		if i >= len(sent) {
			t.Fatalf("%s: got more pushes from %s than it sent (%d): %.200s", who, m.ClientID, len(sent), m.Raw)
		}
		if !bytes.Equal(m.Raw, sent[i]) {
			t.Fatalf("%s: push %d from %s out of order or altered:\n got  %.200s\n want %.200s", who, i, m.ClientID, m.Raw, sent[i])
		}
		next[m.ClientID] = i + 1
	}
	for from, sent := range want {
		if next[from] != len(sent) {
			t.Fatalf("%s: got %d of the %d pushes from %s", who, next[from], len(sent), from)
		}
	}
	return acks
}

// delivCheckAcks checks that acks answer pushes 0..n-1 in order.
func delivCheckAcks(t *testing.T, who string, acks []relaytest.Msg, n int) {
	t.Helper()
	if len(acks) != n {
		t.Fatalf("%s: got %d acks, want %d", who, len(acks), n)
	}
	for i, a := range acks {
		if got := delivAckedSeq(t, a); got != i {
			t.Fatalf("%s: ack %d answers push %d", who, i, got)
		}
	}
}

func TestManyPushesFromOneDeviceReachEveryPeerOnceInOrderAndAreAllAcked(t *testing.T) {
	const n = 1200
	s := relaytest.Start(t, delivNoRateLimit())
	laptop := s.Dial(t, "alice", "laptop")
	peers := []*relaytest.Client{s.Dial(t, "alice", "phone"), s.Dial(t, "alice", "tablet"), s.Dial(t, "alice", "desktop")}
	laptop.Bind()
	for _, p := range peers {
		p.Bind()
	}

	frames := make([][]byte, n)
	for i := range frames {
		frames[i] = delivPush(t, laptop, delivData{User: "alice", From: "laptop", Seq: i})
	}
	reads := make([]<-chan delivReceived, len(peers))
	for i, p := range peers {
		reads[i] = delivReadN(p, n)
	}
	acks := delivReadN(laptop, n)
	for _, b := range frames {
		laptop.SendRaw(b)
	}

	delivCheckAcks(t, "laptop", delivWait(t, acks), n)
	for i, p := range peers {
		if extra := delivCheckStream(t, p.ClientID, delivWait(t, reads[i]), map[string][][]byte{"laptop": frames}); len(extra) > 0 {
			t.Fatalf("%s got an ack for a push it never sent: %s", p.ClientID, extra[0].Raw)
		}
	}
	// Exactly once: nothing more is on its way to anyone.
	laptop.ExpectQuiet()
	for _, p := range peers {
		p.ExpectQuiet()
	}
}

func TestConcurrentSendersKeepTheirOwnOrderAtEveryRecipient(t *testing.T) {
	const n = 600
	s := relaytest.Start(t, delivNoRateLimit())
	laptop, phone := s.Dial(t, "alice", "laptop"), s.Dial(t, "alice", "phone")
	tablet, desktop := s.Dial(t, "alice", "tablet"), s.Dial(t, "alice", "desktop")
	all := []*relaytest.Client{laptop, phone, tablet, desktop}
	for _, c := range all {
		c.Bind()
	}

	sent := make(map[string][][]byte)
	for _, c := range []*relaytest.Client{laptop, phone} {
		for i := range n {
			sent[c.ClientID] = append(sent[c.ClientID], delivPush(t, c, delivData{User: "alice", From: c.ClientID, Seq: i}))
		}
	}
	// Each sender gets its n acks and the other sender's n pushes; the
	// others get both senders' pushes.
	reads := make([]<-chan delivReceived, len(all))
	for i, c := range all {
		reads[i] = delivReadN(c, 2*n)
	}
	w1, w2 := delivWriteAll(laptop, sent["laptop"]), delivWriteAll(phone, sent["phone"])
	for _, w := range []<-chan error{w1, w2} {
		if err := <-w; err != nil {
			t.Fatal(err)
		}
	}

	for i, c := range all {
		want := make(map[string][][]byte)
		for from, frames := range sent {
			if from != c.ClientID {
				want[from] = frames
			}
		}
		acks := delivCheckStream(t, c.ClientID, delivWait(t, reads[i]), want)
		if _, sender := sent[c.ClientID]; sender {
			delivCheckAcks(t, c.ClientID, acks, n)
		} else if len(acks) > 0 {
			t.Fatalf("%s got an ack for a push it never sent: %s", c.ClientID, acks[0].Raw)
		}
	}
	for _, c := range all {
		c.ExpectQuiet()
	}
}

func TestStalledReaderIsClosedAsSlowConsumerWhileItsPeersKeepUp(t *testing.T) {
	s := relaytest.Start(t, delivNoRateLimit(func(c *transport.Config) {
		c.Actors.SendQueueMessages = 64
		c.Actors.SendQueueBytes = 1 << 20
		// A write that cannot progress also ends as a slow consumer, but
		// without a close frame; keep that path out of this test so the
		// queue bound is what closes the stalled client.
		c.WriteTimeout = time.Minute
	}))
	// A device that binds and then stops reading. (Its socket buffers are
	// left alone: shrunk below the loopback segment size, they would stall
	// TCP itself once it reads again.)
	stalled := s.DialRaw(t, "alice", "stalled")
	stalled.Bind()
	laptop, phone, tablet := s.Dial(t, "alice", "laptop"), s.Dial(t, "alice", "phone"), s.Dial(t, "alice", "tablet")
	for _, c := range []*relaytest.Client{laptop, phone, tablet} {
		c.Bind()
	}
	phoneGot, tabletGot := delivReadUntilLast(phone), delivReadUntilLast(tablet)

	const slow = "livestore_relay_slow_consumer_disconnects_total"
	pad := strings.Repeat("x", 32<<10)
	var frames [][]byte
	push := func(d delivData) {
		t.Helper()
		d.User, d.From, d.Seq, d.Pad = "alice", "laptop", len(frames), pad
		b := delivPush(t, laptop, d)
		frames = append(frames, b)
		laptop.SendRaw(b)
		if got := delivAckedSeq(t, laptop.Recv()); got != d.Seq {
			t.Fatalf("ack for push %d answers push %d", d.Seq, got)
		}
	}
	// 4096 pushes of 32 KiB are far more than the socket buffers and the
	// queue bound can hold.
	for len(frames) < 4096 && (len(frames)%16 != 0 || s.Metric(t, slow) == 0) {
		push(delivData{})
	}
	if s.Metric(t, slow) == 0 {
		t.Fatalf("stalled client still not closed after %d pushes of %d bytes", len(frames), len(pad))
	}
	// The others are not held up: more pushes are acked and reach them.
	for range 10 {
		push(delivData{})
	}
	push(delivData{Last: true})
	for _, got := range []<-chan delivReceived{phoneGot, tabletGot} {
		msgs := delivWait(t, got)
		if acks := delivCheckStream(t, "peer", msgs, map[string][][]byte{"laptop": frames}); len(acks) > 0 {
			t.Fatalf("peer got an ack for a push it never sent: %s", acks[0].Raw)
		}
	}
	phone.ExpectQuiet()
	tablet.ExpectQuiet()

	// Reading at last, the stalled client finds a prefix of the pushes, in
	// order, and then the slow consumer close.
	end := stalled.ReadUntilClose()
	if end.Code != 4003 {
		t.Fatalf("stalled client: connection ended with close %d (%v) after %d messages, want 4003", end.Code, end.Err, len(end.Messages))
	}
	if len(end.Messages) == 0 || len(end.Messages) >= len(frames) {
		t.Fatalf("stalled client read %d of %d pushes before its close, want some but not all", len(end.Messages), len(frames))
	}
	for i, m := range end.Messages {
		if !bytes.Equal(m.Raw, frames[i]) {
			t.Fatalf("stalled client: message %d is not push %d: %.200s", i, i, m.Raw)
		}
	}
	if got := s.Metric(t, slow); got != 1 {
		t.Fatalf("%s = %v, want 1", slow, got)
	}
}

func TestManyUsersPushingAtOnceReachOnlyTheirOwnDevices(t *testing.T) {
	const users, devices, n = 50, 3, 10
	s := relaytest.Start(t, delivNoRateLimit())
	type device struct {
		user string
		c    *relaytest.Client
		sent [][]byte
	}
	var all []*device
	for u := range users {
		user := fmt.Sprintf("user-%02d", u)
		for d := range devices {
			// The same clientIds for every user: only the user separates them.
			all = append(all, &device{user: user, c: s.Dial(t, user, fmt.Sprintf("device-%d", d))})
		}
	}
	for _, d := range all {
		d.c.Bind()
	}
	for _, d := range all {
		for i := range n {
			d.sent = append(d.sent, delivPush(t, d.c, delivData{User: d.user, From: d.c.ClientID, Seq: i}))
		}
	}

	reads := make([]<-chan delivReceived, len(all))
	for i, d := range all {
		reads[i] = delivReadN(d.c, n*devices) // n acks, n pushes from each other device
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(all))
	for _, d := range all {
		wg.Go(func() { errs <- <-delivWriteAll(d.c, d.sent) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	for i, d := range all {
		msgs := delivWait(t, reads[i])
		who := d.user + "/" + d.c.ClientID
		want := make(map[string][][]byte)
		for _, o := range all {
			if o.user == d.user && o != d {
				want[o.c.ClientID] = o.sent
			}
		}
		for _, m := range msgs {
			if m.Type == "push" {
				if _, data := delivDecode(t, m); data.User != d.user {
					t.Fatalf("%s got a push of %s: %.200s", who, data.User, m.Raw)
				}
			}
		}
		delivCheckAcks(t, who, delivCheckStream(t, who, msgs, want), n)
	}
	for _, d := range all {
		d.c.ExpectQuiet()
	}
}

func TestPushesAreNotKeptForDevicesThatWereOffline(t *testing.T) {
	s := relaytest.Start(t)
	laptop, phone := s.Dial(t, "alice", "laptop"), s.Dial(t, "alice", "phone")
	laptop.Bind()
	phone.Bind()
	phone.Close()

	// Pushed while the phone is away and before the tablet exists: acked,
	// relayed to nobody, kept for nobody.
	laptop.Push(laptop.Event("while away"))
	laptop.Expect("ack")
	phone = s.Dial(t, "alice", "phone")
	tablet := s.Dial(t, "alice", "tablet")
	for _, c := range []*relaytest.Client{phone, tablet} {
		var events []json.RawMessage
		c.Bind().Field(t, "events", &events)
		if len(events) != 0 {
			t.Fatalf("%s: pull returned stored events %s", c.ClientID, events)
		}
		c.ExpectQuiet()
	}

	// What is pushed once they are bound reaches them.
	sent := laptop.Push(laptop.Event("after"))
	for _, c := range []*relaytest.Client{phone, tablet} {
		if got := c.Expect("push"); !bytes.Equal(got.Raw, sent) {
			t.Fatalf("%s: got %s, want %s", c.ClientID, got.Raw, sent)
		}
	}
	laptop.Expect("ack")
}
