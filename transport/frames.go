package transport

import (
	"encoding/binary"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"

	"github.com/livestore-relay/livestore-relay/actors"
	"github.com/livestore-relay/livestore-relay/transport/wsframe"
)

// MaxFragments bounds the frames one message may be split into. Fragments
// of no bytes cost no size, so without a count a never-ending message of
// empty continuations would keep a reader busy for nothing; a message with
// more closes the connection with 1009, like one over the size limit.
const MaxFragments = 1024

// msgGrowMin is the smallest step of a message buffer that has to grow.
const msgGrowMin = 4 << 10

// session is what the frame parser tells about a connection's input. The
// actor layer's *actors.Session is the real one; tests use their own.
type session interface {
	// Touch records that bytes arrived.
	Touch(now time.Time)
	// Closing reports whether the connection's end is decided.
	Closing() bool
	// Text takes a complete text message: wsframe.HeaderRoom free bytes, then
	// the unmasked, UTF-8 checked payload. It keeps buf.
	Text(buf []byte, now time.Time)
	// Binary is told of a complete binary message.
	Binary()
	// Ping answers a ping, or drops it past the connection's rate.
	Ping(payload []byte, now time.Time)
	// Pong counts an unsolicited or answering pong against the rate.
	Pong(now time.Time)
	// PeerClose takes the client's close code, 0 when it sent none.
	PeerClose(code uint16)
}

// frameParser turns the bytes of one client connection into messages for
// its session, whatever way they were read: it keeps the state of a frame
// or message that is split across reads, so the reader can hand it any
// chunk it has. Only one goroutine at a time calls it.
// Its fields are ordered to pack: one is held per idle connection.
type frameParser struct {
	sess session
	max  int

	hdr     [ws.MaxHeaderSize]byte // a header split across reads
	hn      uint8
	inFrame bool // the current frame's header is complete

	// The current frame, once its header is complete.
	h    ws.Header
	pos  int64  // payload bytes of the frame read so far
	left int64  // and still to come
	ctl  []byte // a control frame's payload, allocated when one arrives

	// The message being assembled.
	msg   []byte    // wsframe.HeaderRoom first, then the payload so far
	size  int64     // payload bytes announced so far
	frags int32     // frames so far
	op    ws.OpCode // its opcode
	in    bool      // a message is being assembled
	skip  bool      // the close is decided: data payloads are discarded
}

// feed consumes p. It returns closeNone (0) while reading goes on;
// actors.ClosePeer once the peer's close frame has been handed to the
// session; any other reason is why the connection must close, for the
// caller to give to the session. Once it returns a reason, it must not be
// fed again.
func (f *frameParser) feed(p []byte, now time.Time) actors.CloseReason {
	f.sess.Touch(now)
	for len(p) > 0 {
		if !f.inFrame {
			n, r := f.header(p)
			p = p[n:]
			if r != 0 {
				return r
			}
			if !f.inFrame {
				continue // header incomplete: p is used up
			}
		} else {
			n := int(min(int64(len(p)), f.left))
			f.payload(p[:n])
			p = p[n:]
		}
		if f.left == 0 {
			if r := f.complete(now); r != 0 {
				return r
			}
		}
	}
	return 0
}

// header reads (part of) a frame header from p and, once it is complete,
// sets up the frame. It returns how many bytes it consumed, and why the
// connection must close if it must.
func (f *frameParser) header(p []byte) (int, actors.CloseReason) {
	used := 0
	if f.hn < 2 {
		n := copy(f.hdr[f.hn:2], p)
		f.hn += uint8(n)
		used += n
		if f.hn < 2 {
			return used, 0
		}
	}
	size := wsframe.HeaderSize(f.hdr[0], f.hdr[1])
	n := copy(f.hdr[f.hn:size], p[used:])
	f.hn += uint8(n)
	used += n
	if int(f.hn) < size {
		return used, 0
	}
	f.hn = 0
	h, err := wsframe.ParseHeader(f.hdr[:size])
	if err != nil {
		return used, actors.CloseProtocolError
	}
	return used, f.begin(h)
}

// begin checks a complete header against the protocol and the limits
// (before a byte of its payload is read) and sets up its payload. Nothing
// is allocated for a data payload here: a header alone pins no memory.
func (f *frameParser) begin(h ws.Header) actors.CloseReason {
	if h.Rsv != 0 || !h.Masked {
		return actors.CloseProtocolError
	}
	f.h, f.pos, f.left, f.inFrame = h, 0, h.Length, true
	if h.OpCode.IsControl() {
		if h.Length > wsframe.MaxControlPayload || !h.Fin {
			return actors.CloseProtocolError
		}
		if h.Length > 0 && f.ctl == nil {
			f.ctl = make([]byte, wsframe.MaxControlPayload)
		}
		return 0
	}
	switch h.OpCode {
	case ws.OpText, ws.OpBinary:
		if f.in {
			return actors.CloseProtocolError
		}
		f.op, f.in, f.size, f.frags = h.OpCode, true, 0, 0
	case ws.OpContinuation:
		if !f.in {
			return actors.CloseProtocolError
		}
	default:
		return actors.CloseProtocolError
	}
	f.frags++
	if h.Length > int64(f.max)-f.size || f.frags > MaxFragments {
		return actors.CloseTooBig
	}
	f.size += h.Length
	f.skip = f.sess.Closing()
	if f.skip {
		f.msg = nil
	}
	return 0
}

// payload takes the next bytes of the current frame's payload.
func (f *frameParser) payload(b []byte) {
	switch {
	case f.h.OpCode.IsControl():
		copy(f.ctl[f.pos:], b)
	case !f.skip:
		f.grow(len(b))
		start := len(f.msg)
		f.msg = append(f.msg, b...)
		ws.Cipher(f.msg[start:], f.h.Mask, int(f.pos))
	}
	f.pos += int64(len(b))
	f.left -= int64(len(b))
}

// grow makes room for n more bytes of the message. The buffer grows with
// the bytes that have arrived, at most doubling and never past the end of
// the current frame, so a header announcing a large payload that trickles
// in holds no more than twice what came; a frame that arrives whole gets a
// buffer of exactly its size.
func (f *frameParser) grow(n int) {
	have := len(f.msg)
	if f.msg == nil {
		have = wsframe.HeaderRoom
	}
	need := have + n
	if need <= cap(f.msg) {
		return
	}
	frameEnd := have + int(f.left)
	c := max(need, min(max(2*cap(f.msg), msgGrowMin), frameEnd))
	msg := make([]byte, have, c)
	copy(msg, f.msg)
	f.msg = msg
}

// complete handles a frame whose payload has fully arrived.
func (f *frameParser) complete(now time.Time) actors.CloseReason {
	h := f.h
	f.inFrame = false
	if h.OpCode.IsControl() {
		p := f.ctl[:h.Length]
		ws.Cipher(p, h.Mask, 0)
		return f.control(h.OpCode, p, now)
	}
	if !h.Fin {
		return 0
	}
	msg := f.msg
	f.msg, f.in = nil, false
	if f.skip {
		return 0
	}
	if msg == nil { // an empty message
		msg = make([]byte, wsframe.HeaderRoom)
	}
	if f.op == ws.OpBinary {
		f.sess.Binary()
		return 0
	}
	if !utf8.Valid(msg[wsframe.HeaderRoom:]) {
		return actors.CloseInvalidUTF8
	}
	f.sess.Text(msg, now)
	return 0
}

// control handles a ping, pong or close.
func (f *frameParser) control(op ws.OpCode, p []byte, now time.Time) actors.CloseReason {
	switch op {
	case ws.OpPing:
		f.sess.Ping(p, now)
	case ws.OpPong:
		f.sess.Pong(now)
	case ws.OpClose:
		switch {
		case len(p) == 0:
			f.sess.PeerClose(0)
		case len(p) == 1 || !wsframe.ValidCloseCode(binary.BigEndian.Uint16(p)):
			return actors.CloseProtocolError
		case !utf8.Valid(p[2:]):
			return actors.CloseInvalidUTF8
		default:
			f.sess.PeerClose(binary.BigEndian.Uint16(p))
		}
		return actors.ClosePeer
	default:
		return actors.CloseProtocolError
	}
	return 0
}
