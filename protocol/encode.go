package protocol

import (
	"strconv"
	"unicode/utf8"
)

// The encoders append one complete server message (the JSON text only) to
// dst and return the extended slice. They allocate only when dst lacks
// capacity. Every server message carries the reserved clientId, an empty
// sessionId and the server's time now, in milliseconds.

// AppendAck appends the acknowledgement of a push of receivedCount events,
// the last of which had timestamp lastTimestamp (0 when there were none).
func AppendAck(dst []byte, now int64, receivedCount int, lastTimestamp int64) []byte {
	dst = appendEnvelope(dst, "ack", now)
	dst = append(dst, `,"payload":{"receivedCount":`...)
	dst = strconv.AppendInt(dst, int64(receivedCount), 10)
	dst = append(dst, `,"lastTimestamp":`...)
	dst = strconv.AppendInt(dst, lastTimestamp, 10)
	return append(dst, "}}"...)
}

// AppendPullResponse appends the answer to a pull: no events, and the
// clientIds of the requester's online peers in the order given.
func AppendPullResponse(dst []byte, now int64, onlinePeers []string) []byte {
	dst = appendEnvelope(dst, "pull_response", now)
	dst = append(dst, `,"payload":{"events":[],"fromClientId":"server","hasMore":false},"onlinePeers":[`...)
	for i, peer := range onlinePeers {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, peer)
	}
	return append(dst, "]}"...)
}

// AppendServerPeerPullResponse appends the relay's own answer to a
// peer_pull that no peer could take: no events, nothing more to come.
func AppendServerPeerPullResponse(dst []byte, now int64, requestID []byte) []byte {
	dst = appendEnvelope(dst, "peer_pull_response", now)
	dst = append(dst, `,"payload":{"requestId":`...)
	dst = appendString(dst, requestID)
	return append(dst, `,"events":[],"hasMore":false}}`...)
}

// AppendError appends an error message with the given code and text.
func AppendError(dst []byte, now int64, code Code, message string) []byte {
	dst = appendEnvelope(dst, "error", now)
	dst = append(dst, `,"code":`...)
	dst = appendString(dst, code.String())
	dst = append(dst, `,"message":`...)
	dst = appendString(dst, message)
	return append(dst, '}')
}

// appendEnvelope appends the opening of a server message up to and
// including its timestamp. typ must need no escaping.
func appendEnvelope(dst []byte, typ string, now int64) []byte {
	dst = append(dst, `{"type":"`...)
	dst = append(dst, typ...)
	dst = append(dst, `","clientId":"server","sessionId":"","timestamp":`...)
	return strconv.AppendInt(dst, now, 10)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. Quote, backslash and control
// characters are escaped; valid UTF-8 passes through unchanged, and each
// invalid byte becomes U+FFFD so that the output is always valid UTF-8, as
// a WebSocket text frame must be.
func appendString[S ~string | ~[]byte](dst []byte, s S) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			if c == '"' || c == '\\' {
				dst = append(dst, '\\', c)
			} else {
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		var rb [utf8.UTFMax]byte
		n := copy(rb[:], s[i:])
		if r, size := utf8.DecodeRune(rb[:n]); r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		} else {
			i += size
		}
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
