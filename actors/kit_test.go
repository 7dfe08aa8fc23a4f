package actors

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/livestore-relay/livestore-relay/transport/wsframe"
)

// A kit for driving the routing layer through its public surface (Admit,
// Open, Session) without a network: each device has a fake socket that
// records what a client would see, the frames written to it and the close.

// written is one thing a fake socket was asked to do.
type written struct {
	op      ws.OpCode // a frame's opcode
	payload []byte
	code    uint16 // a close frame's code
	closed  bool   // Close: the socket was released
}

// fakeSocket records writes in order. Once stalled, it takes no bytes
// until released, like a client that stopped reading.
type fakeSocket struct {
	events  chan written
	stalled atomic.Bool
	release chan struct{}
}

func newFakeSocket() *fakeSocket {
	return &fakeSocket{events: make(chan written, 4096), release: make(chan struct{})}
}

func (s *fakeSocket) Write(frames [][]byte) (int, error) {
	if s.stalled.Load() {
		select {
		case <-s.release:
		default:
			return 0, nil
		}
	}
	n := 0
	for _, f := range frames {
		n += len(f)
		r := bytes.NewReader(f)
		h, err := ws.ReadHeader(r)
		if err != nil || h.Masked || !h.Fin || int64(r.Len()) != h.Length {
			panic(fmt.Sprintf("not one final unmasked server frame: %q (%v)", f, err))
		}
		w := written{op: h.OpCode, payload: bytes.Clone(f[len(f)-r.Len():])}
		if h.OpCode == ws.OpClose && len(w.payload) >= 2 {
			w.code = binary.BigEndian.Uint16(w.payload)
		}
		s.events <- w
	}
	return n, nil
}

func (s *fakeSocket) Wait(_ bool, ready func(error)) {
	go func() {
		<-s.release
		ready(nil)
	}()
}

func (s *fakeSocket) CloseFrame(code uint16, reason string) []byte {
	return wsframe.Close(code, reason)
}

func (s *fakeSocket) Shut() {}

func (s *fakeSocket) Close() error {
	s.events <- written{closed: true}
	return nil
}

func (s *fakeSocket) RemoteAddr() string { return "fake" }

// newTestSystem starts a routing layer with the defaults, changed by edit.
func newTestSystem(t *testing.T, edit func(*Config)) *System {
	t.Helper()
	cfg := Config{Logger: zerolog.New(io.Discard), Metrics: NewMetrics(prometheus.NewRegistry())}
	if edit != nil {
		edit(&cfg)
	}
	sys, err := NewSystem(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sys.Shutdown)
	return sys
}

// device is one connection of a user, as its client sees it.
type device struct {
	t        *testing.T
	client   string
	session  string
	sock     *fakeSocket
	sess     *Session
	doneOnce sync.Once
}

// open connects a device of user with clientId client.
func open(t *testing.T, sys *System, user, client string) *device {
	t.Helper()
	return openSocket(t, sys, user, client, newFakeSocket())
}

func openSocket(t *testing.T, sys *System, user, client string, sock *fakeSocket) *device {
	t.Helper()
	adm, err := sys.Admit(context.Background(), user)
	if err != nil {
		t.Fatalf("admit %s: %v", user, err)
	}
	d := &device{t: t, client: client, session: "s-" + client, sock: sock}
	d.sess = sys.Open(adm, sock, ConnInfo{})
	t.Cleanup(d.readerDone)
	return d
}

// readerDone tells the connection its reader has stopped, as the transport
// does at the end of the stream.
func (d *device) readerDone() { d.doneOnce.Do(d.sess.Done) }

// send has the device's reader hand over a text message.
func (d *device) send(format string, args ...any) []byte {
	msg := []byte(fmt.Sprintf(format, args...))
	d.sess.Text(frameOf(string(msg)), time.Now())
	return msg
}

// next is the next thing written to the device's socket.
func (d *device) next() written {
	d.t.Helper()
	select {
	case w := <-d.sock.events:
		return w
	case <-time.After(10 * time.Second):
		d.t.Fatalf("%s: nothing written in 10s", d.client)
		return written{}
	}
}

// expect reads the next frame, which must be a text message of type typ,
// and returns it decoded.
func (d *device) expect(typ string) map[string]any {
	d.t.Helper()
	w := d.next()
	if w.op != ws.OpText {
		d.t.Fatalf("%s: got %+v, want a %s message", d.client, w, typ)
	}
	var m map[string]any
	if err := json.Unmarshal(w.payload, &m); err != nil {
		d.t.Fatalf("%s: %q: %v", d.client, w.payload, err)
	}
	if m["type"] != typ {
		d.t.Fatalf("%s: got %s, want a %s message", d.client, w.payload, typ)
	}
	return m
}

// expectBytes reads the next frame, which must carry exactly msg.
func (d *device) expectBytes(msg []byte) {
	d.t.Helper()
	if w := d.next(); w.op != ws.OpText || !bytes.Equal(w.payload, msg) {
		d.t.Fatalf("%s: got %+v %s, want %s", d.client, w, w.payload, msg)
	}
}

// expectError reads the next frame, which must be an error with code.
func (d *device) expectError(code string) map[string]any {
	d.t.Helper()
	m := d.expect("error")
	if m["code"] != code {
		d.t.Fatalf("%s: error %v, want %s", d.client, m, code)
	}
	return m
}

// expectClose reads until the close frame, which must carry code; frames
// queued before it are skipped. The client then goes away.
func (d *device) expectClose(code uint16) {
	d.t.Helper()
	for {
		w := d.next()
		if w.closed {
			d.t.Fatalf("%s: socket released without a close frame, want %d", d.client, code)
		}
		if w.op == ws.OpClose {
			if w.code != code {
				d.t.Fatalf("%s: closed with %d, want %d", d.client, w.code, code)
			}
			d.readerDone()
			return
		}
	}
}

// leave ends the device's connection as a client that vanishes does, and
// waits until its socket is released.
func (d *device) leave() {
	d.t.Helper()
	d.readerDone()
	for {
		if w := d.next(); w.closed {
			return
		}
	}
}

// bind sends the device's first message, a pull, which binds it.
func (d *device) bind() map[string]any {
	d.t.Helper()
	d.send(`{"type":"pull","clientId":%q,"sessionId":%q,"timestamp":1,"payload":{}}`, d.client, d.session)
	return d.expect("pull_response")
}

// nothingQueued shows that no frame was queued for the device before now:
// the answer to a pull sent now is the next thing it reads.
func (d *device) nothingQueued() {
	d.t.Helper()
	d.bind()
}

const testEvent = `{"eventName":"todo.created","eventNumber":%d,"clientId":%q,"sessionId":%q,"timestamp":%d,"data":{"text":"milk"}}`

func (d *device) push(n int) []byte {
	ev := fmt.Sprintf(testEvent, n, d.client, d.session, 1000+n)
	return d.send(`{"type":"push","clientId":%q,"sessionId":%q,"timestamp":1,"payload":{"events":[%s]}}`, d.client, d.session, ev)
}

// peerPull sends a peer_pull; target "" asks every other client.
func (d *device) peerPull(id, target string) []byte {
	extra := ""
	if target != "" {
		extra = fmt.Sprintf(`,"targetClientId":%q`, target)
	}
	return d.send(`{"type":"peer_pull","clientId":%q,"sessionId":%q,"timestamp":1,"payload":{"requestId":%q,"sinceTimestamp":0%s}}`,
		d.client, d.session, id, extra)
}

func (d *device) peerPullResponse(id string, hasMore bool) []byte {
	return d.send(`{"type":"peer_pull_response","clientId":%q,"sessionId":%q,"timestamp":1,"payload":{"requestId":%q,"events":[],"hasMore":%t}}`,
		d.client, d.session, id, hasMore)
}

// joinStore sends a pull that joins store announcing an empty head.
func (d *device) joinStore(store string) map[string]any {
	d.t.Helper()
	d.send(`{"type":"pull","clientId":%q,"sessionId":%q,"timestamp":1,"payload":{"storeId":%q,"head":{"eventNumber":0}}}`,
		d.client, d.session, store)
	return d.expect("pull_response")
}

// storePush pushes event n with parent to store.
func (d *device) storePush(store string, parent, n int) []byte {
	ev := fmt.Sprintf(`{"eventName":"todo.created","eventNumber":%d,"parentEventNumber":%d,"clientId":%q,"sessionId":%q,"timestamp":%d,"data":null}`,
		n, parent, d.client, d.session, 1000+n)
	return d.send(`{"type":"push","clientId":%q,"sessionId":%q,"timestamp":1,"payload":{"storeId":%q,"events":[%s]}}`,
		d.client, d.session, store, ev)
}

// payload is a decoded message's payload.
func payload(t *testing.T, m map[string]any) map[string]any {
	t.Helper()
	p, ok := m["payload"].(map[string]any)
	if !ok {
		t.Fatalf("message %v has no payload object", m)
	}
	return p
}
