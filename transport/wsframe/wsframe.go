// Package wsframe is the relay's WebSocket framing (RFC 6455 §5): parsing
// the headers of client frames and making the server's frames. It is the
// one place that knows how a frame is laid out; the reader (package
// transport) parses with it and the connection actor (package actors)
// frames what it writes with it.
//
// It exists beside gobwas/ws, whose types and ws.Op* codes it uses, for
// what the library does not offer on the hot path: parsing a header without
// an allocation, and writing a header in front of a payload that is already
// in place, so that relayed bytes are never copied.
package wsframe

import (
	"encoding/binary"

	"github.com/gobwas/ws"
)

// HeaderRoom is how many bytes the reader leaves free in front of each
// message payload, so that the relay can write a server frame header there
// and send the received bytes on without copying them. It is the largest
// header of an unmasked frame.
const HeaderRoom = 10

// The bits of a frame header's first two bytes (RFC 6455 §5.2).
const (
	bitFin     = 0x80 // first byte
	bitsRsv    = 0x70
	bitsOpCode = 0x0f
	bitMask    = 0x80 // second byte
	bitsLen    = 0x7f
	len16      = 126 // bitsLen values announcing an extended length
	len64      = 127
)

// HeaderSize is the length of a frame header given its first two bytes.
func HeaderSize(b0, b1 byte) int {
	size := 2
	switch b1 & bitsLen {
	case len16:
		size += 2
	case len64:
		size += 8
	}
	if b1&bitMask != 0 {
		size += 4
	}
	return size
}

// ParseHeader decodes a complete frame header, b of HeaderSize bytes.
// Unlike ws.ReadHeader it does not allocate, and it requires the minimal
// length encoding (RFC 6455 §5.2).
func ParseHeader(b []byte) (h ws.Header, err error) {
	h.Fin = b[0]&bitFin != 0
	h.Rsv = (b[0] & bitsRsv) >> 4
	h.OpCode = ws.OpCode(b[0] & bitsOpCode)
	h.Masked = b[1]&bitMask != 0
	switch l := b[1] & bitsLen; l {
	case len16:
		h.Length = int64(binary.BigEndian.Uint16(b[2:4]))
		if h.Length < len16 {
			return h, ws.ErrHeaderLengthUnexpected
		}
	case len64:
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

// putTextHeader writes an unmasked, final text frame header for a payload
// of n bytes so that it ends exactly at buf[end], and returns where it
// starts.
func putTextHeader(buf []byte, end, n int) int {
	const first = bitFin | byte(ws.OpText)
	switch {
	case n < len16:
		buf[end-2] = first
		buf[end-1] = byte(n)
		return end - 2
	case n < 1<<16:
		buf[end-4] = first
		buf[end-3] = len16
		binary.BigEndian.PutUint16(buf[end-2:end], uint16(n))
		return end - 4
	default:
		buf[end-10] = first
		buf[end-9] = len64
		binary.BigEndian.PutUint64(buf[end-8:end], uint64(n))
		return end - 10
	}
}

// RelayText turns a received text message (HeaderRoom bytes, then the
// payload) into the server frame carrying the same bytes, in place.
func RelayText(buf []byte) []byte {
	start := putTextHeader(buf, HeaderRoom, len(buf)-HeaderRoom)
	return buf[start:]
}

// AppendText encodes a server message with enc after room for a header,
// then frames it as a text frame, appending to dst. It returns the grown
// dst and the frame, a sub-slice of it.
func AppendText(dst []byte, enc func([]byte) []byte) (grown, frame []byte) {
	start := len(dst)
	dst = append(dst, make([]byte, HeaderRoom)...)
	dst = enc(dst)
	h := putTextHeader(dst, start+HeaderRoom, len(dst)-start-HeaderRoom)
	return dst, dst[h:]
}

// MaxControlPayload is the most a control frame (ping, pong, close) may
// carry.
const MaxControlPayload = 125

// ping is the one ping frame every connection is sent: no payload.
var ping = [2]byte{bitFin | byte(ws.OpPing), 0}

// Ping is a server ping frame without payload. It is shared by every
// connection: never modify it.
func Ping() []byte { return ping[:] }

// Pong makes the server pong answering a ping with payload p, of at most
// MaxControlPayload bytes (the parser rejects larger control frames).
func Pong(p []byte) []byte {
	f := make([]byte, 2+len(p))
	f[0] = bitFin | byte(ws.OpPong)
	f[1] = byte(len(p))
	copy(f[2:], p)
	return f
}

// Close makes a server close frame with code and reason; a reason that
// does not fit a control frame is cut.
func Close(code uint16, reason string) []byte {
	reason = reason[:min(len(reason), MaxControlPayload-2)]
	f := make([]byte, 4+len(reason))
	f[0] = bitFin | byte(ws.OpClose)
	f[1] = byte(2 + len(reason))
	binary.BigEndian.PutUint16(f[2:4], code)
	copy(f[4:], reason)
	return f
}

// ValidCloseCode reports whether a peer may send code in a close frame
// (RFC 6455 §7.4).
func ValidCloseCode(code uint16) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// EchoCode is the code a server answers a client's close with: the
// client's own, or 1000 when it sent none (peer 0, or 1005, "no status").
func EchoCode(peer uint16) uint16 {
	if peer == 0 || peer == 1005 {
		return 1000
	}
	return peer
}
