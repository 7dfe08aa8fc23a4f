package actors

import "encoding/binary"

// FrameHeaderRoom is how many bytes the reader leaves free in front of each
// message payload, so that the relay can write a server frame header there
// and send the received bytes on without copying them.
const FrameHeaderRoom = 10

// putTextHeader writes an unmasked, final text frame header for a payload of
// n bytes so that it ends exactly at buf[end], and returns where it starts.
func putTextHeader(buf []byte, end, n int) int {
	switch {
	case n < 126:
		buf[end-2] = 0x81
		buf[end-1] = byte(n)
		return end - 2
	case n < 1<<16:
		buf[end-4] = 0x81
		buf[end-3] = 126
		binary.BigEndian.PutUint16(buf[end-2:end], uint16(n))
		return end - 4
	default:
		buf[end-10] = 0x81
		buf[end-9] = 127
		binary.BigEndian.PutUint64(buf[end-8:end], uint64(n))
		return end - 10
	}
}

// relayFrame turns a received message (payload after FrameHeaderRoom) into
// the server frame carrying the same bytes.
func relayFrame(buf []byte) []byte {
	start := putTextHeader(buf, FrameHeaderRoom, len(buf)-FrameHeaderRoom)
	return buf[start:]
}

// appendServerFrame encodes a server message with enc after room for a
// header, then frames it, appending to dst. It returns the grown dst and the
// frame, a sub-slice of it.
func appendServerFrame(dst []byte, enc func([]byte) []byte) (grown, frame []byte) {
	start := len(dst)
	dst = append(dst, make([]byte, FrameHeaderRoom)...)
	dst = enc(dst)
	h := putTextHeader(dst, start+FrameHeaderRoom, len(dst)-start-FrameHeaderRoom)
	return dst, dst[h:]
}

// controlFrame makes an unmasked control frame (ping, pong) with payload p
// of at most 125 bytes.
func controlFrame(op byte, p []byte) []byte {
	f := make([]byte, 2+len(p))
	f[0] = 0x80 | op
	f[1] = byte(len(p))
	copy(f[2:], p)
	return f
}
