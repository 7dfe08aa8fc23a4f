package integration

import (
	"encoding/json"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/livestore-relay/livestore-relay/test/relaytest"
	"github.com/livestore-relay/livestore-relay/transport"
)

// storeHead is a head as the wire carries it.
type storeHead struct {
	EventNumber int64  `json:"eventNumber"`
	ClientID    string `json:"clientId,omitempty"`
	SessionID   string `json:"sessionId,omitempty"`
}

func (h storeHead) wire() map[string]any {
	m := map[string]any{"eventNumber": h.EventNumber}
	if h.EventNumber > 0 {
		m["clientId"], m["sessionId"] = h.ClientID, h.SessionID
	}
	return m
}

// storeSendJoin sends a pull that joins store announcing h.
func storeSendJoin(c *relaytest.Client, store string, h storeHead) []byte {
	return c.Send(c.Envelope("pull", map[string]any{"storeId": store, "head": h.wire()}))
}

// storeJoin joins store announcing h and returns the pull_response, after
// checking that it names the store.
func storeJoin(t *testing.T, c *relaytest.Client, store string, h storeHead) relaytest.Msg {
	t.Helper()
	storeSendJoin(c, store, h)
	m := c.Expect("pull_response")
	var id string
	m.Field(t, "storeId", &id)
	if id != store {
		t.Fatalf("%s: pull_response for store %q, want %q", c.ClientID, id, store)
	}
	return m
}

// storeJoinHead joins store and returns the relay's head after the join.
func storeJoinHead(t *testing.T, c *relaytest.Client, store string, h storeHead) storeHead {
	t.Helper()
	var got storeHead
	storeJoin(t, c, store, h).Field(t, "head", &got)
	return got
}

// storeEvents makes n chained events of c after parent.
func storeEvents(c *relaytest.Client, parent int64, n int) []map[string]any {
	evs := make([]map[string]any, n)
	for i := range evs {
		evs[i] = map[string]any{
			"eventName": "todo.created", "eventNumber": parent + int64(i) + 1, "parentEventNumber": parent + int64(i),
			"clientId": c.ClientID, "sessionId": c.SessionID, "timestamp": time.Now().UnixMilli(),
			"data": map[string]any{"i": i},
		}
	}
	return evs
}

// storePush sends a push of events to store and returns the bytes sent.
func storePush(c *relaytest.Client, store string, events []map[string]any) []byte {
	if events == nil {
		events = []map[string]any{}
	}
	return c.Send(c.Envelope("push", map[string]any{"storeId": store, "events": events}))
}

// headOf is the head a push by c of events up to n makes.
func headOf(c *relaytest.Client, n int64) storeHead {
	return storeHead{EventNumber: n, ClientID: c.ClientID, SessionID: c.SessionID}
}

// storeExpectAck receives an ack for a push to store and checks the head
// it reports.
func storeExpectAck(t *testing.T, c *relaytest.Client, store string, count int, want storeHead) {
	t.Helper()
	m := c.Expect("ack")
	var id string
	var n int
	var got storeHead
	m.Field(t, "storeId", &id)
	m.Field(t, "receivedCount", &n)
	m.Field(t, "head", &got)
	if id != store || n != count || got != want {
		t.Fatalf("%s: ack %s, want store %q, %d events, head %+v", c.ClientID, m.Raw, store, count, want)
	}
}

// storeExpectHeadError receives an error with code that reports store's head.
func storeExpectHeadError(t *testing.T, c *relaytest.Client, code, store string, want storeHead) relaytest.Msg {
	t.Helper()
	m := c.ExpectError(code)
	var id string
	var got storeHead
	m.Field(t, "storeId", &id)
	m.Field(t, "head", &got)
	if id != store || got != want {
		t.Fatalf("%s: %s, want store %q and head %+v", c.ClientID, m.Raw, store, want)
	}
	return m
}

// replyTo is an error's payload.replyTo.
type replyTo struct {
	Type      string `json:"type"`
	RequestID string `json:"requestId"`
	StoreID   string `json:"storeId"`
}

func storeExpectReplyTo(t *testing.T, m relaytest.Msg, want replyTo) {
	t.Helper()
	var got replyTo
	m.Field(t, "replyTo", &got)
	if got != want {
		t.Fatalf("%s: replyTo %+v, want %+v", m.Raw, got, want)
	}
}

func storeRoomsGone(t *testing.T, s *relaytest.Server) {
	t.Helper()
	relaytest.Eventually(t, relaytest.Timeout, "every room stopped", func() bool {
		return s.Metric(t, "livestore_relay_rooms") == 0 && s.Metric(t, "livestore_relay_connections") == 0
	})
}

func TestStoreJoinTable(t *testing.T) {
	s := relaytest.Start(t)
	laptop := s.Dial(t, "alice", "laptop")
	phone := s.Dial(t, "alice", "phone")
	a5 := storeHead{5, "laptop", "s1"}

	// No head known: the announced one is taken, ids at 0 ignored.
	if got := storeJoinHead(t, laptop, "zero", storeHead{EventNumber: 0, ClientID: "x", SessionID: "y"}); got != (storeHead{}) {
		t.Fatalf("head %+v, want eventNumber 0 without ids", got)
	}
	if got := storeJoinHead(t, laptop, "st", a5); got != a5 {
		t.Fatalf("first join: head %+v, want the announced %+v", got, a5)
	}
	// Equal and the same ids, or above the announced: unchanged.
	if got := storeJoinHead(t, phone, "st", a5); got != a5 {
		t.Fatalf("equal join: head %+v", got)
	}
	if got := storeJoinHead(t, phone, "st", storeHead{3, "phone", "p"}); got != a5 {
		t.Fatalf("join below: head %+v, want the relay's %+v", got, a5)
	}
	if got := storeJoinHead(t, phone, "st", storeHead{}); got != a5 {
		t.Fatalf("join at 0: head %+v, want the relay's %+v", got, a5)
	}
	// Below the announced: the relay adopts it, and counts it.
	adopted := s.Metric(t, "livestore_relay_store_heads_adopted_total")
	b9 := storeHead{9, "phone", "p"}
	if got := storeJoinHead(t, phone, "st", b9); got != b9 {
		t.Fatalf("join above: head %+v, want the announced %+v", got, b9)
	}
	if got := s.Metric(t, "livestore_relay_store_heads_adopted_total"); got != adopted+1 {
		t.Errorf("heads adopted: %v, want %v", got, adopted+1)
	}

	// Equal number, other clientId or sessionId: a fork, and no join.
	tablet := s.Dial(t, "alice", "tablet")
	for _, fork := range []storeHead{{9, "laptop", "p"}, {9, "phone", "other"}} {
		storeSendJoin(tablet, "st", fork)
		m := storeExpectHeadError(t, tablet, "store_conflict", "st", b9)
		storeExpectReplyTo(t, m, replyTo{Type: "pull", StoreID: "st"})
	}
	if got := s.Metric(t, "livestore_relay_store_conflicts_total"); got != 2 {
		t.Errorf("conflicts: %v, want 2", got)
	}
	storePush(tablet, "st", storeEvents(tablet, 9, 1))
	storeExpectReplyTo(t, tablet.ExpectError("invalid_message"), replyTo{Type: "push", StoreID: "st"})
	var peers []string
	storeJoin(t, laptop, "st", b9).Field(t, "storePeers", &peers)
	if strings.Join(peers, ",") != "phone" {
		t.Errorf("storePeers %v: the conflicting device must not have joined", peers)
	}

	// A re-join that conflicts leaves the store: no more of its pushes.
	storeSendJoin(laptop, "st", storeHead{9, "laptop", "s1"})
	storeExpectHeadError(t, laptop, "store_conflict", "st", b9)
	storePush(phone, "st", storeEvents(phone, 9, 1))
	storeExpectAck(t, phone, "st", 1, headOf(phone, 10))
	laptop.ExpectQuiet()
	storePush(laptop, "st", storeEvents(laptop, 10, 1))
	laptop.ExpectError("invalid_message")
}

func TestStorePullResponse(t *testing.T) {
	s := relaytest.Start(t)
	laptop := wireDialAs(t, s, "alice", "laptop", "tab-1")
	laptop2 := wireDialAs(t, s, "alice", "laptop", "tab-2")
	phone := s.Dial(t, "alice", "phone")
	tablet := s.Dial(t, "alice", "tablet")
	watch := s.Dial(t, "alice", "watch") // bound, never joins
	wireBindAll(watch)
	for _, c := range []*relaytest.Client{tablet, phone, laptop2} {
		storeJoin(t, c, "st", storeHead{})
	}
	m := storeJoin(t, laptop, "st", storeHead{})
	wireExpectServerEnvelope(t, m, 0)
	var p map[string]json.RawMessage
	if err := json.Unmarshal(m.Payload, &p); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"events": `[]`, "fromClientId": `"server"`, "hasMore": `false`,
		"storeId": `"st"`, "head": `{"eventNumber":0}`, "storePeers": `["phone","tablet"]`,
	}
	if len(p) != len(want) {
		t.Errorf("%s: payload members %d, want %d", m.Raw, len(p), len(want))
	}
	for k, v := range want {
		if string(p[k]) != v {
			t.Errorf("%s: payload.%s = %s, want %s", m.Raw, k, p[k], v)
		}
	}
	// onlinePeers keeps its meaning: every other bound client.
	if got := strings.Join(m.OnlinePeers, ","); got != "phone,tablet,watch" {
		t.Errorf("onlinePeers %q", got)
	}
	// A plain pull is still the plain answer.
	laptop.Send(laptop.Envelope("pull", map[string]any{}))
	plain := laptop.Expect("pull_response")
	if strings.Contains(string(plain.Payload), "storeId") {
		t.Errorf("plain pull_response %s names a store", plain.Raw)
	}
}

func TestStorePush(t *testing.T) {
	s := relaytest.Start(t)
	laptop := s.Dial(t, "alice", "laptop")
	phone := s.Dial(t, "alice", "phone")
	tablet := s.Dial(t, "alice", "tablet")
	storeJoin(t, laptop, "st", storeHead{})
	storeJoin(t, phone, "st", storeHead{})
	storeJoin(t, tablet, "st", storeHead{})

	// Accepted: forwarded byte for byte to the other joined connections, and
	// the ack names the new head, which takes the last event's own ids.
	evs := storeEvents(laptop, 0, 3)
	evs[2]["clientId"], evs[2]["sessionId"] = "laptop-import", "import-1"
	sent := storePush(laptop, "st", evs)
	wireExpectRelayed(t, phone, "push", sent)
	wireExpectRelayed(t, tablet, "push", sent)
	h3 := storeHead{3, "laptop-import", "import-1"}
	storeExpectAck(t, laptop, "st", 3, h3)

	// Not on the head: head_mismatch in the ack's place, nothing forwarded.
	storePush(phone, "st", storeEvents(phone, 2, 1))
	m := storeExpectHeadError(t, phone, "head_mismatch", "st", h3)
	storeExpectReplyTo(t, m, replyTo{Type: "push", StoreID: "st"})
	storePush(phone, "st", storeEvents(phone, 4, 1)) // ahead of the head
	storeExpectHeadError(t, phone, "head_mismatch", "st", h3)
	if got := s.Metric(t, "livestore_relay_store_pushes_total", "result", "head_mismatch"); got != 2 {
		t.Errorf("head_mismatch pushes counted: %v", got)
	}

	// An empty push is acked with the unchanged head and goes nowhere.
	storePush(tablet, "st", nil)
	storeExpectAck(t, tablet, "st", 0, h3)
	wireQuietAll(laptop, phone, tablet)

	// The next push on the head is accepted.
	sent = storePush(phone, "st", storeEvents(phone, 3, 1))
	wireExpectRelayed(t, laptop, "push", sent)
	wireExpectRelayed(t, tablet, "push", sent)
	storeExpectAck(t, phone, "st", 1, headOf(phone, 4))
	if got := s.Metric(t, "livestore_relay_store_pushes_total", "result", "accepted"); got != 2 {
		t.Errorf("accepted pushes counted: %v", got)
	}
}

func TestStorePushValidationComesFirst(t *testing.T) {
	s := relaytest.Start(t)
	laptop := s.Dial(t, "alice", "laptop")
	phone := s.Dial(t, "alice", "phone")
	storeJoin(t, laptop, "st", storeHead{})
	storeJoin(t, phone, "st", storeHead{})

	broken := [][]map[string]any{
		append(storeEvents(laptop, 5, 1), storeEvents(laptop, 7, 1)...), // first parent off the head too
		append(storeEvents(laptop, 0, 1), storeEvents(laptop, 2, 1)...), // a gap
		append(storeEvents(laptop, 0, 1), storeEvents(laptop, 0, 1)...), // a repeat
	}
	skip := storeEvents(laptop, 0, 1)
	skip[0]["eventNumber"] = 2
	noParent := storeEvents(laptop, 0, 1)
	delete(noParent[0], "parentEventNumber")
	broken = append(broken, skip, noParent)
	for _, evs := range broken {
		storePush(laptop, "st", evs)
		m := laptop.ExpectError("invalid_message")
		storeExpectReplyTo(t, m, replyTo{Type: "push", StoreID: "st"})
	}
	bad := laptop.Envelope("push", map[string]any{"storeId": 7, "events": []any{}})
	laptop.Send(bad)
	storeExpectReplyTo(t, laptop.ExpectError("invalid_message"), replyTo{Type: "push"})
	// Nothing was relayed and the head did not move.
	phone.ExpectQuiet()
	storePush(laptop, "st", storeEvents(laptop, 0, 1))
	storeExpectAck(t, laptop, "st", 1, headOf(laptop, 1))

	// Not joined: invalid_message, even for a valid chain on the head.
	storePush(laptop, "other", storeEvents(laptop, 0, 1))
	storeExpectReplyTo(t, laptop.ExpectError("invalid_message"), replyTo{Type: "push", StoreID: "other"})
	if got := s.Metric(t, "livestore_relay_store_pushes_total", "result", "not_joined"); got != 1 {
		t.Errorf("not_joined pushes counted: %v", got)
	}
	if got := s.Metric(t, "livestore_relay_store_pushes_total", "result", "invalid_message"); got != 5 {
		t.Errorf("invalid pushes counted: %v", got)
	}
}

func TestStoreRouting(t *testing.T) {
	s := relaytest.Start(t)
	laptop := s.Dial(t, "alice", "laptop")
	phone := s.Dial(t, "alice", "phone")
	tablet := s.Dial(t, "alice", "tablet") // joins another store
	watch := s.Dial(t, "alice", "watch")   // joins none
	mallory := s.Dial(t, "bob", "laptop")  // another user, same store id
	storeJoin(t, laptop, "st", storeHead{})
	storeJoin(t, phone, "st", storeHead{})
	storeJoin(t, tablet, "other", storeHead{})
	watch.Bind()
	storeJoin(t, mallory, "st", storeHead{})

	sent := storePush(laptop, "st", storeEvents(laptop, 0, 1))
	wireExpectRelayed(t, phone, "push", sent)
	storeExpectAck(t, laptop, "st", 1, headOf(laptop, 1))
	wireQuietAll(tablet, watch, mallory)

	// The other user's store of the same name is its own: still at 0.
	storePush(mallory, "st", storeEvents(mallory, 0, 1))
	storeExpectAck(t, mallory, "st", 1, headOf(mallory, 1))

	// Plain pushes still go to every other bound connection.
	plain := laptop.Push(laptop.Event("x"))
	for _, c := range []*relaytest.Client{phone, tablet, watch} {
		wireExpectRelayed(t, c, "push", plain)
	}
	laptop.Expect("ack")
	mallory.ExpectQuiet()
}

func TestStorePeerPull(t *testing.T) {
	s := relaytest.Start(t)
	laptop := wireDialAs(t, s, "alice", "laptop", "tab-1")
	laptop2 := wireDialAs(t, s, "alice", "laptop", "tab-2")
	phone := s.Dial(t, "alice", "phone")
	tablet := s.Dial(t, "alice", "tablet")
	watch := s.Dial(t, "alice", "watch") // bound, not joined
	for _, c := range []*relaytest.Client{laptop, laptop2, phone, tablet} {
		storeJoin(t, c, "st", storeHead{})
	}
	watch.Bind()
	storePush(phone, "st", storeEvents(phone, 0, 2))
	for _, c := range []*relaytest.Client{laptop, laptop2, tablet} {
		c.Expect("push")
	}
	storeExpectAck(t, phone, "st", 2, headOf(phone, 2))

	// Only joined connections of other clients are asked.
	sent := wireSendPeerPull(laptop, "r1", map[string]any{"storeId": "st", "sinceEventNumber": 0})
	wireExpectRelayed(t, phone, "peer_pull", sent)
	wireExpectRelayed(t, tablet, "peer_pull", sent)
	wireQuietAll(laptop2, watch)
	resp := phone.Send(phone.Envelope("peer_pull_response", map[string]any{
		"requestId": "r1", "storeId": "st", "head": headOf(phone, 2).wire(), "events": storeEvents(phone, 0, 2), "hasMore": false,
	}))
	wireExpectRelayed(t, laptop, "peer_pull_response", resp)

	// A target that has not joined is nobody: the server answers with the head.
	before := time.Now().UnixMilli()
	wireSendPeerPull(laptop, "r2", map[string]any{"storeId": "st", "targetClientId": "watch"})
	m := laptop.Expect("peer_pull_response")
	wireExpectServerEnvelope(t, m, before)
	var p map[string]json.RawMessage
	if err := json.Unmarshal(m.Payload, &p); err != nil {
		t.Fatal(err)
	}
	if string(p["requestId"]) != `"r2"` || string(p["events"]) != "[]" || string(p["hasMore"]) != "false" ||
		string(p["storeId"]) != `"st"` || len(p) != 5 {
		t.Errorf("server answer %s", m.Raw)
	}
	var h storeHead
	m.Field(t, "head", &h)
	if h != headOf(phone, 2) {
		t.Errorf("server answer head %+v", h)
	}
	watch.ExpectQuiet()

	// Narrowed to a joined target: only it is asked.
	sent = wireSendPeerPull(laptop, "r3", map[string]any{"storeId": "st", "targetClientId": "tablet"})
	wireExpectRelayed(t, tablet, "peer_pull", sent)
	phone.ExpectQuiet()

	// Not joined: invalid_message naming the request.
	wireSendPeerPull(watch, "r4", map[string]any{"storeId": "st"})
	storeExpectReplyTo(t, watch.ExpectError("invalid_message"), replyTo{Type: "peer_pull", RequestID: "r4", StoreID: "st"})
	// Without storeId the watch still reaches everyone.
	sent = wireSendPeerPull(watch, "r5", nil)
	for _, c := range []*relaytest.Client{laptop, laptop2, phone, tablet} {
		wireExpectRelayed(t, c, "peer_pull", sent)
	}
}

func TestErrorsNameTheMessageTheyAnswer(t *testing.T) {
	s := relaytest.Start(t)
	laptop := s.Dial(t, "alice", "laptop")
	laptop.Bind()
	wireSendPeerPullResponse(laptop, "nope", false)
	storeExpectReplyTo(t, laptop.ExpectError("unknown_request"), replyTo{Type: "peer_pull_response", RequestID: "nope"})
	wireSendAs(laptop, "other", laptop.SessionID, "push", map[string]any{"events": []any{}})
	storeExpectReplyTo(t, laptop.ExpectError("client_mismatch"), replyTo{Type: "push"})
	laptop.Send(laptop.Envelope("push", map[string]any{"events": "x"}))
	storeExpectReplyTo(t, laptop.ExpectError("invalid_message"), replyTo{Type: "push"})
	// Unknown type: nothing to name.
	laptop.Send(laptop.Envelope("subscribe", map[string]any{}))
	if m := laptop.ExpectError("unsupported_type"); len(m.Payload) != 0 {
		t.Errorf("%s: payload for a message of unknown type", m.Raw)
	}
}

func TestStoreLimitPerUser(t *testing.T) {
	s := relaytest.Start(t, relaytest.WithLimits(func(c *transport.Config) { c.Actors.MaxStoresPerUser = 2 }))
	laptop := s.Dial(t, "alice", "laptop")
	storeJoin(t, laptop, "a", storeHead{})
	storeJoin(t, laptop, "b", storeHead{})
	storeSendJoin(laptop, "c", storeHead{})
	storeExpectReplyTo(t, laptop.ExpectError("limit_exceeded"), replyTo{Type: "pull", StoreID: "c"})
	storePush(laptop, "c", storeEvents(laptop, 0, 1))
	laptop.ExpectError("invalid_message")  // did not join
	storeJoin(t, laptop, "a", storeHead{}) // known stores still join
	bob := s.Dial(t, "bob", "x")
	storeJoin(t, bob, "c", storeHead{})

	// Heads kept past the room still count.
	laptop.Close()
	bob.Close()
	storeRoomsGone(t, s)
	again := s.Dial(t, "alice", "laptop")
	storeSendJoin(again, "c", storeHead{})
	again.ExpectError("limit_exceeded")
}

func TestStoreHeadOutlivesTheRoom(t *testing.T) {
	s := relaytest.Start(t)
	laptop := s.Dial(t, "alice", "laptop")
	phone := s.Dial(t, "alice", "phone")
	storeJoin(t, laptop, "st", storeHead{})
	storeJoin(t, phone, "st", storeHead{})
	storePush(laptop, "st", storeEvents(laptop, 0, 4))
	phone.Expect("push")
	storeExpectAck(t, laptop, "st", 4, headOf(laptop, 4))
	laptop.Close()
	phone.Close()
	storeRoomsGone(t, s)

	// An old device comes back alone: the relay still knows the head, so the
	// device learns it is behind instead of writing a second history.
	old := s.Dial(t, "alice", "old")
	if got := storeJoinHead(t, old, "st", storeHead{}); got != headOf(laptop, 4) {
		t.Fatalf("head after the room stopped: %+v, want %+v", got, headOf(laptop, 4))
	}
	storePush(old, "st", storeEvents(old, 0, 1))
	storeExpectHeadError(t, old, "head_mismatch", "st", headOf(laptop, 4))
}

// storeBinary starts the relay binary with a state directory, without the
// clean-stop check (these tests kill it).
func storeBinary(t *testing.T, dir string) (*relaytest.Server, *relaytest.Process) {
	t.Helper()
	args := []string{"--addr", "127.0.0.1:0", "--state-dir", dir}
	if r := os.Getenv("RELAYTEST_READER"); r != "" {
		args = append(args, "--reader", r)
	}
	p := relaytest.Exec(t, relaytest.CleanEnv(secretEnv()), args...)
	return p.Server(p.Listening()), p
}

func TestBinaryStateDirKeepsHeadsAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	s, p := storeBinary(t, dir)
	laptop := s.Dial(t, "alice", "laptop")
	storeJoin(t, laptop, "st", storeHead{})
	storePush(laptop, "st", storeEvents(laptop, 0, 2))
	storeExpectAck(t, laptop, "st", 2, headOf(laptop, 2))
	laptop.Close()
	p.Signal(syscall.SIGTERM)
	if code := p.Wait(20 * time.Second); code != 0 {
		t.Fatalf("exit code %d\n%s", code, p.Stderr())
	}

	s, p = storeBinary(t, dir)
	phone := s.Dial(t, "alice", "phone")
	if got := storeJoinHead(t, phone, "st", storeHead{}); got != headOf(laptop, 2) {
		t.Fatalf("head after restart %+v, want %+v", got, headOf(laptop, 2))
	}
	p.Signal(syscall.SIGTERM)
	p.Wait(20 * time.Second)
}

func TestBinaryKillAfterAckKeepsTheHead(t *testing.T) {
	dir := t.TempDir()
	s, p := storeBinary(t, dir)
	laptop := s.Dial(t, "alice", "laptop")
	storeJoin(t, laptop, "st", storeHead{})
	var head storeHead
	for i := range 20 {
		storePush(laptop, "st", storeEvents(laptop, int64(i), 1))
		head = headOf(laptop, int64(i+1))
		storeExpectAck(t, laptop, "st", 1, head)
	}
	if n := s.Metric(t, "livestore_relay_state_write_seconds"); n < 21 {
		t.Errorf("%v state writes observed, want one per join and push", n)
	}
	storePush(laptop, "st", storeEvents(laptop, 20, 1))
	head = headOf(laptop, 21)
	storeExpectAck(t, laptop, "st", 1, head)
	p.Signal(syscall.SIGKILL) // at once after the last ack
	p.Wait(10 * time.Second)

	s, _ = storeBinary(t, dir)
	phone := s.Dial(t, "alice", "phone")
	if got := storeJoinHead(t, phone, "st", storeHead{}); got != head {
		t.Fatalf("head after kill -9: %+v, want the last acked %+v", got, head)
	}
}

func TestBinaryWithoutStateDirWarnsOnce(t *testing.T) {
	_, p := relaytest.StartBinary(t, relaytest.CleanEnv(secretEnv()))
	if n := strings.Count(p.Stderr(), "will not survive a restart"); n != 1 {
		t.Fatalf("warning logged %d times\n%s", n, p.Stderr())
	}
}

func TestBinaryUnusableStateDirIsAStartError(t *testing.T) {
	file := t.TempDir() + "/file"
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := relaytest.Run(t, relaytest.CleanEnv(secretEnv()), "--addr", "127.0.0.1:0", "--state-dir", file+"/heads")
	if code != 2 || !strings.HasPrefix(stderr, "relay: ") || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("exit code %d, want 2 with a one-line error\nstderr:\n%s", code, stderr)
	}
}

func TestStoreJoinsEndWithTheConnection(t *testing.T) {
	s := relaytest.Start(t)
	laptop := wireDialAs(t, s, "alice", "laptop", "tab")
	phone := s.Dial(t, "alice", "phone")
	storeJoin(t, laptop, "st", storeHead{})
	storeJoin(t, phone, "st", storeHead{})

	// A newer connection of the same client and session replaces the
	// first; the joins were the old connection's and do not carry over.
	again := wireDialAs(t, s, "alice", "laptop", "tab")
	again.Bind()
	laptop.ExpectClose(4002)
	var peers []string
	storeJoin(t, phone, "st", storeHead{}).Field(t, "storePeers", &peers)
	if len(peers) != 0 {
		t.Fatalf("storePeers %v after the joined connection was replaced", peers)
	}
	storePush(again, "st", storeEvents(again, 0, 1))
	again.ExpectError("invalid_message")
	storePush(phone, "st", storeEvents(phone, 0, 1))
	storeExpectAck(t, phone, "st", 1, headOf(phone, 1))
	again.ExpectQuiet() // not forwarded to a connection that has not joined
	if got := storeJoinHead(t, again, "st", storeHead{}); got != headOf(phone, 1) {
		t.Fatalf("head %+v", got)
	}
}
