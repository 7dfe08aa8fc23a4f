package transport

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"

	"github.com/livestore-relay/livestore-relay/actors"
)

// readLoop reads frames from one upgraded connection until it ends, and
// hands complete messages to the session. It is the only reader of r.
func readLoop(r *bufio.Reader, sess *actors.Session, maxMessage int) {
	defer sess.Done()
	fr := frameReader{r: r, sess: sess, max: maxMessage}
	if reason := fr.run(); reason != 0 {
		sess.Fail(reason)
	}
	// The close is decided; wait for the peer to close its side (or the
	// grace period the writer set) so that closing the socket does not
	// reset a connection whose close frame is still unread.
	_, _ = io.Copy(io.Discard, r)
}

type frameReader struct {
	r    *bufio.Reader
	sess *actors.Session
	max  int
	msg  []byte    // the message being assembled, FrameHeaderRoom first
	op   ws.OpCode // its opcode while fragmented
	ctl  [125]byte
}

// run returns 0 when the stream ended or the close is already decided, or
// the reason the reader found to close the connection.
func (f *frameReader) run() actors.CloseReason {
	for {
		h, err := readHeader(f.r)
		if err != nil {
			if errors.Is(err, ws.ErrHeaderLengthMSB) || errors.Is(err, ws.ErrHeaderLengthUnexpected) {
				return actors.CloseProtocolError
			}
			return 0 // the stream ended or the socket was closed
		}
		now := time.Now()
		f.sess.Touch(now)
		if h.Rsv != 0 || !h.Masked {
			return actors.CloseProtocolError
		}
		if h.OpCode.IsControl() {
			if reason, done := f.control(h); done {
				return reason
			}
			continue
		}
		switch h.OpCode {
		case ws.OpText, ws.OpBinary:
			if f.msg != nil {
				return actors.CloseProtocolError
			}
			f.op = h.OpCode
		case ws.OpContinuation:
			if f.msg == nil {
				return actors.CloseProtocolError
			}
		default:
			return actors.CloseProtocolError
		}
		have := len(f.msg) - actors.FrameHeaderRoom
		if f.msg == nil {
			have = 0
		}
		// The size limit is enforced before a byte of the payload is read.
		if h.Length > int64(f.max-have) {
			return actors.CloseTooBig
		}
		if f.sess.Closing() {
			if _, err := io.CopyN(io.Discard, f.r, h.Length); err != nil {
				return 0
			}
			f.msg = nil
			continue
		}
		if f.msg == nil {
			f.msg = make([]byte, actors.FrameHeaderRoom, actors.FrameHeaderRoom+int(h.Length))
		}
		start := len(f.msg)
		f.msg = append(f.msg, make([]byte, h.Length)...)
		if _, err := io.ReadFull(f.r, f.msg[start:]); err != nil {
			return 0
		}
		ws.Cipher(f.msg[start:], h.Mask, 0)
		if !h.Fin {
			continue
		}
		msg := f.msg
		f.msg = nil
		if f.op == ws.OpBinary {
			f.sess.Binary()
			continue
		}
		if !utf8.Valid(msg[actors.FrameHeaderRoom:]) {
			return actors.CloseInvalidUTF8
		}
		f.sess.Text(msg, now)
	}
}

// control handles a ping, pong or close frame. done reports that reading
// should stop, with the reason to close (0 when the close is the peer's).
func (f *frameReader) control(h ws.Header) (reason actors.CloseReason, done bool) {
	if h.Length > 125 || !h.Fin {
		return actors.CloseProtocolError, true
	}
	p := f.ctl[:h.Length]
	if _, err := io.ReadFull(f.r, p); err != nil {
		return 0, true
	}
	ws.Cipher(p, h.Mask, 0)
	switch h.OpCode {
	case ws.OpPing:
		f.sess.Ping(p)
	case ws.OpPong:
	case ws.OpClose:
		switch {
		case len(p) == 0:
			f.sess.PeerClose(0)
		case len(p) == 1 || !validCloseCode(binary.BigEndian.Uint16(p)):
			return actors.CloseProtocolError, true
		case !utf8.Valid(p[2:]):
			return actors.CloseInvalidUTF8, true
		default:
			f.sess.PeerClose(binary.BigEndian.Uint16(p))
		}
		return 0, true
	default:
		return actors.CloseProtocolError, true
	}
	return 0, false
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

// readHeader reads a frame header straight out of the reader's buffer;
// ws.ReadHeader allocates a scratch slice per call, this does not.
func readHeader(r *bufio.Reader) (h ws.Header, err error) {
	b, err := r.Peek(2)
	if err != nil {
		return h, err
	}
	h.Fin = b[0]&0x80 != 0
	h.Rsv = (b[0] & 0x70) >> 4
	h.OpCode = ws.OpCode(b[0] & 0x0f)
	h.Masked = b[1]&0x80 != 0
	size := 2
	switch b[1] & 0x7f {
	case 126:
		size += 2
	case 127:
		size += 8
	}
	if h.Masked {
		size += 4
	}
	if b, err = r.Peek(size); err != nil {
		return h, err
	}
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
		copy(h.Mask[:], b[size-4:size])
	}
	_, _ = r.Discard(size)
	return h, nil
}
