package soak

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"
)

const (
	// writeTimeout bounds a write to a relay that stopped reading; the
	// device is then given up (a write error fails the run).
	writeTimeout = 10 * time.Second
	// readBufferBytes is the per-connection read buffer: small, because a
	// worker holds up to 19,000 connections; longer frames are read past it.
	readBufferBytes = 2048
	// maxInboundFrame guards the tool against a runaway length header.
	maxInboundFrame = 64 << 20
	// serverClientID is the clientId of messages the relay itself writes.
	serverClientID = "server"
)

// user is one user's devices and the checker's book for them.
type user struct {
	index     int // index in the whole run, used in request ids
	spec      userSpec
	reqPrefix string // every request id of this user starts with it
	book      *book
	devices   []*device
}

func (u *user) deviceIndex(clientID string) int {
	return slices.IndexFunc(u.devices, func(d *device) bool { return d.id.clientID == clientID })
}

// liveOthers lists the devices of u other than d that are bound and still
// connected: the ones the relay must deliver d's pushes to.
func (u *user) liveOthers(d *device) []int {
	var out []int
	for _, o := range u.devices {
		if o != d && o.live() {
			out = append(out, o.idx)
		}
	}
	return out
}

func (u *user) liveOthersCount(d *device) int64 {
	var n int64
	for _, o := range u.devices {
		if o != d && o.live() {
			n++
		}
	}
	return n
}

// inflight is a push sent and not yet acked.
type inflight struct {
	seq    uint64
	ts     int64 // the events' timestamp, which the ack echoes as lastTimestamp
	sentNs int64
}

// pendingPull is a peer_pull this device sent and that is not fully answered.
type pendingPull struct {
	sentNs     int64
	waiting    []int // devices that have not yet answered with hasMore:false
	fromServer bool  // no peer was online: the relay answers itself
}

// device is one connection: a client of one user with its own clientId.
type device struct {
	w     *worker
	u     *user
	idx   int // index among its user's devices
	shard int
	id    identity
	pad   int

	conn net.Conn
	br   *bufio.Reader

	boundCh  chan struct{} // closed by the reader on the first pull_response
	bound    atomic.Bool
	severed  atomic.Bool // the relay closed it, or reading or writing failed, before the tool closed it
	closing  atomic.Bool // the tool has sent its close frame
	isClosed atomic.Bool

	mu          sync.Mutex // serializes writes; guards what follows
	dead        bool       // a write failed: nothing more is sent
	seq         uint64
	eventNumber uint64
	lastTS      int64
	inflight    []inflight
	pullSeq     uint64
	pulls       map[string]*pendingPull
	// head is the store's head as this device knows it, with a store: from
	// its join, its acks, the pushes it receives and head_mismatch errors.
	head int64
}

// sequenced reports whether the run pushes to a sequenced store.
func (d *device) sequenced() bool { return d.id.storeJS != nil }

// live reports whether the device is bound and the relay still owes it
// every push of its peers.
func (d *device) live() bool { return d.bound.Load() && !d.severed.Load() }

// url is the relay node this device connects to.
func (d *device) url() string {
	urls := d.w.spec.URLs
	return urls[nodeFor(d.u.index, d.idx, len(urls))]
}

// open dials, starts the reader and binds with a pull; it returns once the
// pull_response arrived, or records why the device could not connect.
func (d *device) open(ctx context.Context) {
	st := d.w.st
	ctx, cancel := context.WithTimeout(ctx, d.w.spec.ConnectTimeout)
	defer cancel()
	dialer := ws.Dialer{Timeout: d.w.spec.ConnectTimeout, ReadBufferSize: 1024, WriteBufferSize: 1024}
	token := url.QueryEscape(d.u.spec.Token)
	conn, br, _, err := dialer.Dial(ctx, d.url()+"?token="+token)
	if err != nil {
		// Tokens are never shown, even inside an error that quotes the URL.
		msg := strings.ReplaceAll(err.Error(), token, "<token>")
		d.w.connectFailed(classifyDialError(err), fmt.Errorf("dial %s/%s: %s", d.u.spec.ID, d.id.clientID, msg))
		return
	}
	d.conn = conn
	if br != nil {
		// The relay wrote right after the handshake; those bytes sit in
		// br and must be read before the socket.
		d.br = bufio.NewReaderSize(io.MultiReader(br, conn), readBufferBytes)
	} else {
		d.br = bufio.NewReaderSize(conn, readBufferBytes)
	}
	st.open.Add(1)
	d.w.readers.Add(1)
	go d.readLoop()

	d.mu.Lock()
	err = d.writeText(func(b []byte) []byte { return d.id.appendPull(b, time.Now().UnixMilli()) })
	d.mu.Unlock()
	if err != nil {
		d.severed.Store(true)
		d.w.connectFailed("bind_write", fmt.Errorf("bind %s/%s: %w", d.u.spec.ID, d.id.clientID, err))
		_ = conn.Close()
		return
	}
	select {
	case <-d.boundCh:
		st.connects.Add(1)
	case <-ctx.Done():
		d.severed.Store(true)
		d.w.connectFailed("bind_timeout", fmt.Errorf("bind %s/%s: no pull_response in %v", d.u.spec.ID, d.id.clientID, d.w.spec.ConnectTimeout))
		_ = conn.Close()
	}
}

func classifyDialError(err error) string {
	var status ws.StatusError
	var ne net.Error
	switch {
	case errors.As(err, &status):
		return "http_" + strconv.Itoa(int(status))
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no_local_port"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "too_many_open_files"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "dial_error"
}

// writeText builds a text frame with build and writes it. The caller holds d.mu.
func (d *device) writeText(build func([]byte) []byte) error {
	fb := d.w.getFrame()
	defer d.w.putFrame(fb)
	fb.reset()
	fb.b = build(fb.b)
	return d.writeFrame(fb.finish(ws.OpText, newMask()))
}

// writeFrame writes a complete frame. The caller holds d.mu.
func (d *device) writeFrame(frame []byte) error {
	return d.writeFrameBy(frame, time.Now().Add(writeTimeout))
}

func (d *device) writeFrameBy(frame []byte, deadline time.Time) error {
	if d.dead {
		return errors.New("connection given up after a failed write")
	}
	_ = d.conn.SetWriteDeadline(deadline)
	if _, err := d.conn.Write(frame); err != nil {
		d.dead = true
		if !d.closing.Load() {
			d.severed.Store(true)
			d.w.st.writeErrors.Add(1)
		}
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

func newMask() [4]byte {
	var m [4]byte
	binary.LittleEndian.PutUint32(m[:], rand.Uint32())
	return m
}

// writeControl writes a ping answer or a close frame. The caller holds d.mu.
func (d *device) writeControl(op ws.OpCode, payload []byte) error {
	fb := d.w.getFrame()
	defer d.w.putFrame(fb)
	fb.reset()
	fb.b = append(fb.b, payload...)
	return d.writeFrame(fb.finish(op, newMask()))
}

// sendPush sends the next push of this device.
func (d *device) sendPush() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.dead {
		return
	}
	if d.sequenced() && len(d.inflight) > 0 {
		// A second push on the same head could only be refused.
		d.w.st.busySkips.Add(1)
		return
	}
	d.seq++
	ns := time.Now().UnixNano()
	ms := ns / int64(time.Millisecond)
	// The ack names a push only by the timestamp of its last event, so each
	// push of a device gets a distinct one, as close to the clock as that allows.
	ts := max(ms, d.lastTS+1)
	d.lastTS = ts
	p := pushSpec{seq: d.seq, eventNumber: d.eventNumber, ts: ts, sentNs: ns, events: d.w.spec.EventsPerPush, pad: d.pad}
	d.eventNumber += uint64(p.events)
	if d.sequenced() {
		p.eventNumber = uint64(d.head) + 1
	}
	d.u.book.sent(d.idx, p.seq)
	d.inflight = append(d.inflight, inflight{seq: p.seq, ts: ts, sentNs: ns})
	if err := d.writeText(func(b []byte) []byte { return d.id.appendPush(b, ms, p) }); err != nil {
		d.inflight = d.inflight[:len(d.inflight)-1]
		return
	}
	d.w.st.pushes.Add(1)
}

// sendPeerPull asks every other device of the user for history.
func (d *device) sendPeerPull() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.dead {
		return
	}
	d.pullSeq++
	reqID := d.u.reqPrefix + strconv.Itoa(d.idx) + "." + strconv.FormatUint(d.pullSeq, 10)
	waiting := d.u.liveOthers(d)
	now := time.Now()
	d.pulls[reqID] = &pendingPull{sentNs: now.UnixNano(), waiting: waiting, fromServer: len(waiting) == 0}
	if err := d.writeText(func(b []byte) []byte { return d.id.appendPeerPull(b, now.UnixMilli(), reqID) }); err != nil {
		delete(d.pulls, reqID)
		return
	}
	d.w.st.peerPulls.Add(1)
}

// closeByTool starts the closing handshake; the reader ends when the relay
// answers or the deadline passes. One deadline serves every connection, so
// that closing thousands of them against a stuck relay stays bounded.
func (d *device) closeByTool(deadline time.Time) {
	if d.conn == nil {
		return
	}
	d.closing.Store(true)
	fb := d.w.getFrame()
	fb.reset()
	fb.b = append(fb.b, ws.NewCloseFrameBody(ws.StatusNormalClosure, "")...)
	d.mu.Lock()
	_ = d.writeFrameBy(fb.finish(ws.OpClose, newMask()), deadline)
	d.mu.Unlock()
	d.w.putFrame(fb)
	_ = d.conn.SetReadDeadline(deadline)
}

// readLoop reads frames until the connection ends. It is the only reader of
// the socket, and the only writer of this device's receiving state.
func (d *device) readLoop() {
	st := d.w.st
	defer d.w.readers.Done()
	defer st.open.Add(-1)
	defer d.conn.Close()
	var msg inbound
	var frag []byte
	for {
		h, err := ws.ReadHeader(d.br)
		if err != nil {
			d.ended()
			return
		}
		if h.Length > maxInboundFrame {
			st.anomalies.add("oversized_frame", 1)
			d.ended()
			return
		}
		buf := d.w.getBuf(int(h.Length))
		payload := buf[:h.Length]
		if _, err := io.ReadFull(d.br, payload); err != nil {
			d.w.putBuf(buf)
			d.ended()
			return
		}
		if h.Masked {
			st.anomalies.add("masked_server_frame", 1)
			ws.Cipher(payload, h.Mask, 0)
		}
		switch h.OpCode {
		case ws.OpPing:
			d.mu.Lock()
			_ = d.writeControl(ws.OpPong, payload)
			d.mu.Unlock()
		case ws.OpPong:
		case ws.OpClose:
			d.closed(payload)
			d.w.putBuf(buf)
			return
		case ws.OpBinary:
			st.anomalies.add("binary_frame", 1)
		case ws.OpText, ws.OpContinuation:
			switch {
			case h.OpCode == ws.OpContinuation && frag == nil:
				st.anomalies.add("stray_continuation", 1)
			case !h.Fin || frag != nil:
				frag = append(frag, payload...)
				if h.Fin {
					d.handle(frag, &msg)
					frag = nil
				}
			default:
				d.handle(payload, &msg)
			}
		default:
			st.anomalies.add("unknown_opcode", 1)
		}
		d.w.putBuf(buf)
	}
}

// ended is a connection that stopped without a close frame.
func (d *device) ended() {
	d.isClosed.Store(true)
	if d.closing.Load() {
		return
	}
	if d.severed.CompareAndSwap(false, true) {
		d.w.st.closes.add("1006", 1) // abnormal closure: no close frame
	}
}

// closed handles the relay's close frame: the answer to the tool's, or the
// relay closing the connection on its own, which a soak run never provokes.
func (d *device) closed(payload []byte) {
	d.isClosed.Store(true)
	if d.closing.Load() {
		return
	}
	code := ws.StatusNoStatusRcvd
	if len(payload) >= 2 {
		code, _ = ws.ParseCloseFrameData(payload)
	}
	if d.severed.CompareAndSwap(false, true) {
		d.w.st.closes.add(strconv.Itoa(int(code)), 1)
	}
	d.mu.Lock()
	_ = d.writeControl(ws.OpClose, ws.NewCloseFrameBody(code, ""))
	d.dead = true
	d.mu.Unlock()
}

func (d *device) handle(payload []byte, msg *inbound) {
	st := d.w.st
	if err := decodeInbound(payload, msg); err != nil {
		st.anomalies.add("unparseable_message", 1)
		return
	}
	now := time.Now().UnixNano()
	switch msg.Type {
	case "ack":
		d.onAck(msg, now)
	case "push":
		d.onPush(msg, now)
	case "pull_response":
		if msg.HasHead {
			d.mu.Lock()
			d.head = max(d.head, msg.HeadNumber)
			d.mu.Unlock()
		}
		if d.bound.CompareAndSwap(false, true) {
			close(d.boundCh)
		} else {
			st.anomalies.add("unrequested_pull_response", 1)
		}
	case "peer_pull":
		d.onPeerPull(msg)
	case "peer_pull_response":
		d.onPeerPullResponse(msg, now)
	case "error":
		if msg.Code == "head_mismatch" && d.sequenced() {
			if handled, retry := d.onHeadMismatch(msg); handled {
				if retry {
					// As a LiveStore client does once it has the missing
					// events: push again, on the new head.
					d.sendPush()
				}
				return
			}
		}
		code := msg.Code
		if code == "" {
			code = "(none)"
		}
		st.errors.add(code, 1)
		d.w.firstError(fmt.Errorf("%s/%s got error %s: %s", d.u.spec.ID, d.id.clientID, code, msg.Message))
	default:
		st.anomalies.add("unknown_type", 1)
	}
}

// onAck matches an ack with the oldest push in flight. Acks come in the
// order of the pushes; one that names a later push means the earlier ones
// were dropped without an ack (as a rate-limited push is).
func (d *device) onAck(msg *inbound, now int64) {
	st := d.w.st
	if !msg.HasReceivedCount {
		st.anomalies.add("malformed_ack", 1)
		return
	}
	d.mu.Lock()
	i := slices.IndexFunc(d.inflight, func(p inflight) bool { return p.ts == msg.LastTimestamp })
	if i < 0 {
		d.mu.Unlock()
		st.anomalies.add("unmatched_ack", 1)
		return
	}
	p := d.inflight[i]
	d.inflight = d.inflight[i+1:]
	if msg.HasHead {
		d.head = msg.HeadNumber
	}
	d.mu.Unlock()
	if i > 0 {
		st.skippedAcks.Add(int64(i))
		st.anomalies.add("push_without_ack", int64(i))
	}
	if msg.ReceivedCount != int64(d.w.spec.EventsPerPush) {
		st.anomalies.add("ack_count_mismatch", 1)
	}
	d.u.book.ack(d.idx, p.seq)
	st.expectedSoFar.Add(d.u.liveOthersCount(d))
	st.acks.Add(1)
	st.ackLat.record(d.shard, now-p.sentNs)
}

// onPush checks a push relayed from a peer.
func (d *device) onPush(msg *inbound, now int64) {
	st := d.w.st
	st.deliveries.Add(1)
	evs := msg.Events
	if len(evs) == 0 {
		st.anomalies.add("empty_push_relayed", 1)
		return
	}
	first := evs[0]
	for i, e := range evs {
		if e.User != first.User || e.Client != first.Client || e.Seq != first.Seq || e.Index != i {
			st.anomalies.add("mangled_push", 1)
			return
		}
	}
	switch d.u.book.deliver(d.idx, first) {
	case outcomeForeign:
		st.foreign.Add(1)
		return
	case outcomeSelf:
		st.anomalies.add("own_push_relayed_back", 1)
		return
	case outcomeDuplicate:
		st.duplicated.Add(1)
	case outcomeReordered:
		st.reordered.Add(1)
		st.firstDeliveries.Add(1)
	case outcomeInOrder:
		st.firstDeliveries.Add(1)
	}
	if msg.ClientID != first.Client {
		st.anomalies.add("envelope_client_mismatch", 1)
	}
	if d.sequenced() {
		d.mu.Lock()
		d.head = max(d.head, evs[len(evs)-1].Number)
		d.mu.Unlock()
	}
	st.deliveryLat.record(d.shard, now-first.SentNs)
}

// onHeadMismatch takes a sequenced push the relay refused because another
// device's push took the head first: the push is withdrawn (it is neither
// acked nor delivered) and the device moves to the relay's head. A device
// here has pushed at most once on a head, so the push refused is the one in
// flight. retry tells the caller to push again.
func (d *device) onHeadMismatch(msg *inbound) (handled, retry bool) {
	st := d.w.st
	if !msg.HasHead {
		return false, false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.inflight) != 1 {
		st.anomalies.add("head_mismatch_without_push", 1)
		return true, false
	}
	d.inflight = d.inflight[:0]
	d.head = max(d.head, msg.HeadNumber)
	st.pushes.Add(-1)
	st.headMismatches.Add(1)
	return true, !d.dead && !d.closing.Load()
}

// onPeerPull answers a peer's request with the configured number of pages.
func (d *device) onPeerPull(msg *inbound) {
	st := d.w.st
	j := d.u.deviceIndex(msg.ClientID)
	reqID := msg.RequestID
	if j < 0 || j == d.idx || len(reqID) <= len(d.u.reqPrefix) || reqID[:len(d.u.reqPrefix)] != d.u.reqPrefix {
		st.foreign.Add(1)
		return
	}
	pages := d.w.spec.PeerPullPages
	d.mu.Lock()
	defer d.mu.Unlock()
	for page := 1; page <= pages; page++ {
		ms := time.Now().UnixMilli()
		if err := d.writeText(func(b []byte) []byte {
			return d.id.appendPeerPullResponse(b, ms, reqID, page, page < pages)
		}); err != nil {
			return
		}
		st.peerPullAnswers.Add(1)
	}
}

// onPeerPullResponse counts a page of an answer to this device's peer_pull.
func (d *device) onPeerPullResponse(msg *inbound, now int64) {
	st := d.w.st
	for _, e := range msg.Events {
		if e.User != d.u.spec.ID {
			st.foreign.Add(1)
			return
		}
	}
	if !msg.HasHasMore {
		st.anomalies.add("malformed_peer_pull_response", 1)
		return
	}
	st.peerPullPages.Add(1)
	hasMore := msg.HasMore
	d.mu.Lock()
	p := d.pulls[msg.RequestID]
	if p == nil {
		d.mu.Unlock()
		st.anomalies.add("unrequested_peer_pull_response", 1)
		return
	}
	done := false
	if msg.ClientID == serverClientID {
		if !p.fromServer {
			st.anomalies.add("relay_answered_for_online_peers", 1)
		}
		if hasMore {
			st.anomalies.add("relay_answer_has_more", 1)
		}
		done = true
	} else {
		pos := slices.Index(p.waiting, d.u.deviceIndex(msg.ClientID))
		if pos < 0 {
			d.mu.Unlock()
			st.anomalies.add("peer_pull_response_from_non_target", 1)
			return
		}
		if !hasMore {
			p.waiting = slices.Delete(p.waiting, pos, pos+1)
			done = len(p.waiting) == 0
		}
	}
	if done {
		delete(d.pulls, msg.RequestID)
	}
	d.mu.Unlock()
	if done {
		st.peerPullsAnswered.Add(1)
		st.peerPullLat.record(d.shard, now-p.sentNs)
	}
}

// unanswered counts this device's peer_pulls still waiting on a peer that
// is still connected. A peer that left ends its part of a request, so it is
// owed nothing; its leaving is reported as a close. Run after the readers end.
func (d *device) unanswered() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	var n int64
	for _, p := range d.pulls {
		if p.fromServer || slices.ContainsFunc(p.waiting, func(j int) bool { return d.u.devices[j].live() }) {
			n++
		}
	}
	return n
}
