package actors

import (
	"time"

	"golang.org/x/time/rate"

	"github.com/livestore-relay/livestore-relay/protocol"
	"github.com/livestore-relay/livestore-relay/transport/wsframe"
)

// Errors the session answers without routing a message anywhere. They are
// never modified.
var (
	errRateLimited    = &protocol.Error{Code: protocol.CodeRateLimited, Message: "message rate exceeded; message dropped"}
	errClientMismatch = &protocol.Error{Code: protocol.CodeClientMismatch, Message: "clientId and sessionId must match the first message on this connection"}
	errBinary         = &protocol.Error{Code: protocol.CodeInvalidMessage, Message: "binary frames are not accepted; send JSON text"}
	errDuplicateReq   = &protocol.Error{Code: protocol.CodeInvalidMessage, Message: "requestId is already pending on this connection"}
	errTooManyPulls   = &protocol.Error{Code: protocol.CodeLimitExceeded, Message: "too many pending peer_pull requests on this connection"}
	errUnknownRequest = &protocol.Error{Code: protocol.CodeUnknownRequest, Message: "no pending peer_pull with this requestId expects a response from this connection"}
)

// Session is the inbound side of one connection. Its methods are called by
// the socket's reader, one at a time, never concurrently.
type Session struct {
	c       *conn
	bound   *identity // set by the first valid message
	limiter rate.Limiter
}

func newSession(c *conn) *Session {
	s := &Session{c: c}
	// Held by value to spare an allocation per connection. Configured as
	// of the zero time, so the bucket is full at the first message.
	s.limiter.SetBurstAt(time.Time{}, c.sys.cfg.RateBurst)
	s.limiter.SetLimitAt(time.Time{}, rate.Limit(c.sys.cfg.Rate))
	return s
}

// identity is a bound (clientId, sessionId) pair.
type identity struct{ clientID, sessionID string }

// inbound is one accepted client message on its way to the room. The room
// queues the same value to every recipient (they write frame) and to the
// sender (which writes the ack), so a relayed push costs one allocation
// besides its buffer.
//
// Ownership: the session fills it and sends it to the room; the room may
// still set store.head before it queues the message to anyone. From the
// first enqueue on it is shared by every recipient's actor, concurrently,
// and read-only: nobody writes it, or frame's bytes, again.
type inbound struct {
	c      *conn
	typ    protocol.Type
	err    *protocol.Error // answer this error and nothing else
	frame  []byte          // the received bytes as a server frame
	read   time.Time
	bindAs *identity // set on the message that binds the connection
	// push and peer_pull_response
	events int
	lastTs int64
	// peer_pull and peer_pull_response
	requestID string
	target    string
	hasTarget bool
	hasMore   bool
	// store is set for a message naming a sequenced store (store.go);
	// held by pointer so that plain messages stay small.
	store *storeIn
}

// storeIn is what the room needs of a message naming a sequenced store.
type storeIn struct {
	id string
	// head is the announced head of a join; for a push, the head its last
	// event would make, and once the room has accepted it, the head the ack
	// reports (written before the room queues the push to anyone).
	head        protocol.Head
	firstParent int64
}

// storeID is the store the message names, or "".
func (m *inbound) storeID() string {
	if m.store == nil {
		return ""
	}
	return m.store.id
}

// Closing reports whether the connection's end has been decided, or the
// peer's close frame read; the reader then only waits for the peer's close
// or the end of the stream.
func (s *Session) Closing() bool { return s.c.reason.Load() != 0 || s.c.peerClosed.Load() }

// Touch records that a frame arrived, for the liveness check.
func (s *Session) Touch(now time.Time) { s.c.lastRead.Store(now.UnixNano()) }

// Text handles one complete text message. buf holds wsframe.HeaderRoom free
// bytes and then the unmasked, UTF-8 checked payload; the session keeps buf.
func (s *Session) Text(buf []byte, now time.Time) {
	c := s.c
	if s.Closing() {
		return
	}
	sys := c.sys
	c.msgsIn.Add(1)
	// A local Message: one kept in the session would hold the last
	// frame's buffer alive for as long as the connection stays idle.
	var msg protocol.Message
	m := &msg
	if !s.limiter.AllowN(now, 1) {
		sys.metrics.in[protocol.TypeUnknown].Inc()
		sys.metrics.inBytes[protocol.TypeUnknown].Add(float64(len(buf) - wsframe.HeaderRoom))
		sys.metrics.droppedRate.Inc()
		// Decoded only to tell the client which message was dropped.
		_ = sys.decoder.Decode(buf[wsframe.HeaderRoom:], m)
		s.answerTo(errRateLimited, m)
		return
	}
	err := sys.decoder.Decode(buf[wsframe.HeaderRoom:], m)
	sys.metrics.in[m.Type].Inc()
	sys.metrics.inBytes[m.Type].Add(float64(len(buf) - wsframe.HeaderRoom))
	if err != nil {
		sys.metrics.droppedInvalid.Inc()
		if m.Type == protocol.TypePush && m.StoreID != nil {
			sys.metrics.store.pushRejected[rejectInvalid].Inc()
		}
		if pe, ok := err.(*protocol.Error); ok {
			s.answerTo(pe, m)
		} else {
			s.answerTo(&protocol.Error{Code: protocol.CodeInvalidMessage, Message: "invalid message"}, m)
		}
		return
	}
	in := &inbound{c: c, typ: m.Type, read: now}
	if s.bound == nil {
		id := &identity{clientID: string(m.ClientID), sessionID: string(m.SessionID)}
		s.bound = id
		c.ident.Store(id)
		in.bindAs = id
	} else if string(m.ClientID) != s.bound.clientID || string(m.SessionID) != s.bound.sessionID {
		sys.metrics.droppedMismatch.Inc()
		s.answerTo(errClientMismatch, m)
		return
	}
	if m.StoreID != nil {
		in.store = &storeIn{id: string(m.StoreID)}
		if d := c.roomDisp; d != nil {
			d.waits.Store(true) // the room will wait for the head keeper: not on this reader
		}
	}
	switch m.Type {
	case protocol.TypePush:
		in.frame = wsframe.RelayText(buf)
		in.events, in.lastTs = m.EventCount, m.LastEventTimestamp
		if m.StoreID != nil && m.EventCount > 0 {
			in.store.firstParent = m.FirstParent
			in.store.head = headOf(m.LastEvent)
		}
	case protocol.TypePull:
		if m.StoreID != nil {
			in.store.head = headOf(m.Head)
		}
	case protocol.TypePeerPull:
		in.frame = wsframe.RelayText(buf)
		in.requestID = string(m.RequestID)
		if m.TargetClientID != nil {
			in.target, in.hasTarget = string(m.TargetClientID), true
		}
	case protocol.TypePeerPullResponse:
		in.frame = wsframe.RelayText(buf)
		in.requestID = string(m.RequestID)
		in.events, in.lastTs = m.EventCount, m.LastEventTimestamp
		in.hasMore = m.HasMore
	}
	c.toRoom(in)
}

// Binary handles a binary message, which the protocol does not use.
func (s *Session) Binary() {
	if s.Closing() {
		return
	}
	s.c.msgsIn.Add(1)
	s.c.sys.metrics.in[protocol.TypeUnknown].Inc()
	s.answer(errBinary)
}

// answer sends an error through the room so that it reaches the client in
// the order of the messages it answers.
func (s *Session) answer(e *protocol.Error) {
	s.c.toRoom(&inbound{c: s.c, err: e})
}

// answerTo is answer for a message decoded at least in part: the error
// names the message's type, requestId and storeId as far as they are known.
func (s *Session) answerTo(e *protocol.Error, m *protocol.Message) {
	in := &inbound{c: s.c, err: e, typ: m.Type}
	if m.RequestID != nil {
		in.requestID = string(m.RequestID)
	}
	if m.StoreID != nil {
		in.store = &storeIn{id: string(m.StoreID)}
	}
	s.c.toRoom(in)
}

// headOf copies a head out of the frame.
func headOf(h protocol.HeadRef) protocol.Head {
	return protocol.Head{EventNumber: h.EventNumber, ClientID: string(h.ClientID), SessionID: string(h.SessionID)}
}

// Ping answers a client ping with a pong carrying the same payload. Pings
// count against the connection's message rate: past it they are dropped
// unanswered, so a ping flood costs the relay no more than the rate allows.
func (s *Session) Ping(payload []byte, now time.Time) {
	if s.Closing() || !s.limiter.AllowN(now, 1) {
		return
	}
	s.c.enqueue(&ctrlFrame{b: wsframe.Pong(payload)})
}

// Pong takes a pong, which needs no answer; it counts against the message
// rate like any frame the client sends.
func (s *Session) Pong(now time.Time) { s.limiter.AllowN(now, 1) }

// PeerClose handles the client's close frame; code 0 means it carried none.
// The close goes through the room, behind the messages read before it, so
// that each of them is relayed, acked or answered before the close echo.
func (s *Session) PeerClose(code uint16) {
	c := s.c
	if c.peerClosed.Load() {
		return
	}
	c.peerCode.Store(uint32(code))
	c.peerClosed.Store(true)
	c.toRoom(peerClose{c: c})
	c.post(watchRoom{})
}

// Fail ends the connection for a reason the reader found (a protocol
// violation, a message over the size limit).
func (s *Session) Fail(r CloseReason) { s.c.close(r) }

// Done tells the connection that its reader has stopped and will not touch
// the socket again.
func (s *Session) Done() { s.c.post(readerDone{}) }
