package transport

import (
	"encoding/binary"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"

	"github.com/livestore-relay/livestore-relay/actors"
)

// frameParser turns the bytes of one client connection into messages for
// its session, whatever way they were read: it keeps the state of a frame
// or message that is split across reads, so the reader can hand it any
// chunk it has. Only one goroutine at a time calls it.
type frameParser struct {
	sess *actors.Session
	max  int

	hdr  [ws.MaxHeaderSize]byte // a header split across reads
	hn   int
	h    ws.Header
	left int64  // payload bytes of the current frame still to come
	dst  []byte // where they go: the message or the control payload
	ctl  []byte // a control frame's payload, allocated when one arrives
	skip bool   // the close is decided: data payloads are discarded

	msg []byte    // the message being assembled, FrameHeaderRoom first
	op  ws.OpCode // its opcode
	in  bool      // a message is being assembled
}

// feed consumes p. It reports stop when reading must end: the peer closed,
// or the parser found a reason to close (already given to the session).
func (f *frameParser) feed(p []byte, now time.Time) (stop bool) {
	f.sess.Touch(now)
	for len(p) > 0 {
		if f.left == 0 && f.dst == nil {
			n, ok := f.header(p)
			p = p[n:]
			if !ok {
				return true
			}
			if f.dst == nil && f.left == 0 {
				continue // header incomplete
			}
			if f.left > 0 {
				continue
			}
		} else {
			n := int(min(int64(len(p)), f.left))
			if !f.skip || f.h.OpCode.IsControl() {
				copy(f.dst[len(f.dst)-int(f.left):], p[:n])
			}
			f.left -= int64(n)
			p = p[n:]
		}
		if f.left == 0 {
			if done := f.complete(now); done {
				return true
			}
		}
	}
	return false
}

// header reads (part of) a frame header from p and prepares the payload's
// destination. It returns how many bytes it consumed and false when the
// connection must close.
func (f *frameParser) header(p []byte) (int, bool) {
	used := 0
	if f.hn < 2 {
		n := copy(f.hdr[f.hn:2], p)
		f.hn += n
		used += n
		if f.hn < 2 {
			return used, true
		}
	}
	size := headerSize(f.hdr[0], f.hdr[1])
	n := copy(f.hdr[f.hn:size], p[used:])
	f.hn += n
	used += n
	if f.hn < size {
		return used, true
	}
	f.hn = 0
	h, err := parseHeader(f.hdr[:size])
	if err != nil {
		f.sess.Fail(actors.CloseProtocolError)
		return used, false
	}
	if reason := f.begin(h); reason != 0 {
		f.sess.Fail(reason)
		return used, false
	}
	return used, true
}

// begin checks a complete header against the protocol and the size limit
// (before a byte of its payload is read) and sets up its payload.
func (f *frameParser) begin(h ws.Header) actors.CloseReason {
	if h.Rsv != 0 || !h.Masked {
		return actors.CloseProtocolError
	}
	f.h, f.left = h, h.Length
	if h.OpCode.IsControl() {
		if h.Length > 125 || !h.Fin {
			return actors.CloseProtocolError
		}
		if cap(f.ctl) < int(h.Length) {
			f.ctl = make([]byte, 0, 125)
		}
		f.dst = f.ctl[:h.Length]
		return 0
	}
	switch h.OpCode {
	case ws.OpText, ws.OpBinary:
		if f.in {
			return actors.CloseProtocolError
		}
		f.op, f.in = h.OpCode, true
	case ws.OpContinuation:
		if !f.in {
			return actors.CloseProtocolError
		}
	default:
		return actors.CloseProtocolError
	}
	have := 0
	if f.msg != nil {
		have = len(f.msg) - actors.FrameHeaderRoom
	}
	if h.Length > int64(f.max-have) {
		return actors.CloseTooBig
	}
	f.skip = f.sess.Closing()
	if f.skip {
		f.dst = f.hdr[:0] // anything non-nil: the payload is counted, not kept
		return 0
	}
	if f.msg == nil {
		f.msg = make([]byte, actors.FrameHeaderRoom, actors.FrameHeaderRoom+int(h.Length))
	}
	f.msg = append(f.msg, make([]byte, h.Length)...)
	f.dst = f.msg
	return 0
}

// complete handles a frame whose payload has fully arrived. It reports
// whether reading must end.
func (f *frameParser) complete(now time.Time) bool {
	h := f.h
	f.dst = nil
	if h.OpCode.IsControl() {
		p := f.ctl[:h.Length]
		ws.Cipher(p, h.Mask, 0)
		return f.control(h.OpCode, p)
	}
	if f.skip {
		if h.Fin {
			f.msg, f.in = nil, false
		}
		return false
	}
	start := len(f.msg) - int(h.Length)
	ws.Cipher(f.msg[start:], h.Mask, 0)
	if !h.Fin {
		return false
	}
	msg := f.msg
	f.msg, f.in = nil, false
	if f.op == ws.OpBinary {
		f.sess.Binary()
		return false
	}
	if !utf8.Valid(msg[actors.FrameHeaderRoom:]) {
		f.sess.Fail(actors.CloseInvalidUTF8)
		return true
	}
	f.sess.Text(msg, now)
	return false
}

// control handles a ping, pong or close. It reports whether reading must end.
func (f *frameParser) control(op ws.OpCode, p []byte) bool {
	switch op {
	case ws.OpPing:
		f.sess.Ping(p)
	case ws.OpPong:
	case ws.OpClose:
		switch {
		case len(p) == 0:
			f.sess.PeerClose(0)
		case len(p) == 1 || !validCloseCode(binary.BigEndian.Uint16(p)):
			f.sess.Fail(actors.CloseProtocolError)
		case !utf8.Valid(p[2:]):
			f.sess.Fail(actors.CloseInvalidUTF8)
		default:
			f.sess.PeerClose(binary.BigEndian.Uint16(p))
		}
		return true
	default:
		f.sess.Fail(actors.CloseProtocolError)
		return true
	}
	return false
}

// validCloseCode reports whether a peer may send code (RFC 6455 §7.4).
func validCloseCode(code uint16) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// headerSize is the length of a frame header given its first two bytes.
func headerSize(b0, b1 byte) int {
	size := 2
	switch b1 & 0x7f {
	case 126:
		size += 2
	case 127:
		size += 8
	}
	if b1&0x80 != 0 {
		size += 4
	}
	return size
}

// parseHeader decodes a complete frame header. Unlike ws.ReadHeader it
// does not allocate, and it requires the minimal length encoding (RFC 6455
// §5.2).
func parseHeader(b []byte) (h ws.Header, err error) {
	h.Fin = b[0]&0x80 != 0
	h.Rsv = (b[0] & 0x70) >> 4
	h.OpCode = ws.OpCode(b[0] & 0x0f)
	h.Masked = b[1]&0x80 != 0
	switch l := b[1] & 0x7f; l {
	case 126:
		h.Length = int64(binary.BigEndian.Uint16(b[2:4]))
		if h.Length < 126 {
			return h, ws.ErrHeaderLengthUnexpected
		}
	case 127:
		u := binary.BigEndian.Uint64(b[2:10])
		if u&(1<<63) != 0 {
			return h, ws.ErrHeaderLengthMSB
		}
		h.Length = int64(u)
		if h.Length < 1<<16 {
			return h, ws.ErrHeaderLengthUnexpected
		}
	default:
		h.Length = int64(l)
	}
	if h.Masked {
		copy(h.Mask[:], b[len(b)-4:])
	}
	return h, nil
}
