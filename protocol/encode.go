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

// AppendStoreAck appends the acknowledgement of a push to a sequenced
// store: an ack whose payload also names the store and its head after the
// push.
func AppendStoreAck(dst []byte, now int64, receivedCount int, lastTimestamp int64, storeID string, head Head) []byte {
	dst = AppendAck(dst, now, receivedCount, lastTimestamp)
	dst = dst[:len(dst)-2] // reopen the payload
	dst = appendStoreMembers(dst, storeID, head)
	return append(dst, "}}"...)
}

// AppendStorePullResponse appends the answer to a pull that joined a
// sequenced store: a pull_response whose payload also holds the store, its
// head and the clientIds of the other connections joined to it.
func AppendStorePullResponse(dst []byte, now int64, onlinePeers []string, storeID string, head Head, storePeers []string) []byte {
	dst = appendEnvelope(dst, "pull_response", now)
	dst = append(dst, `,"payload":{"events":[],"fromClientId":"server","hasMore":false`...)
	dst = appendStoreMembers(dst, storeID, head)
	dst = append(dst, `,"storePeers":`...)
	dst = appendStrings(dst, storePeers)
	dst = append(dst, `},"onlinePeers":`...)
	dst = appendStrings(dst, onlinePeers)
	return append(dst, '}')
}

// AppendStorePeerPullResponse appends the relay's own answer to a
// sequenced peer_pull that no peer could take: no events, and the store's
// head as the relay knows it.
func AppendStorePeerPullResponse(dst []byte, now int64, requestID []byte, storeID string, head Head) []byte {
	dst = AppendServerPeerPullResponse(dst, now, requestID)
	dst = dst[:len(dst)-2]
	dst = appendStoreMembers(dst, storeID, head)
	return append(dst, "}}"...)
}

// ReplyTo names the client message an error answers. Type is
// TypeUnknown when the message's type is not known; RequestID and StoreID
// are empty when the message held none.
type ReplyTo struct {
	Type      Type
	RequestID string
	StoreID   string
}

// AppendErrorReply appends an error like AppendError, with a payload that
// names the message answered (payload.replyTo, left out when its type is
// unknown) and, when head is not nil, the store and its head (for
// store_conflict and head_mismatch).
func AppendErrorReply(dst []byte, now int64, code Code, message string, to ReplyTo, head *Head) []byte {
	dst = AppendError(dst, now, code, message)
	if to.Type == TypeUnknown && head == nil {
		return dst
	}
	dst = dst[:len(dst)-1] // reopen the message
	dst = append(dst, `,"payload":{`...)
	if head != nil {
		dst = append(dst, `"storeId":`...)
		dst = appendString(dst, to.StoreID)
		dst = append(dst, `,"head":`...)
		dst = AppendHead(dst, *head)
		if to.Type != TypeUnknown {
			dst = append(dst, ',')
		}
	}
	if to.Type != TypeUnknown {
		dst = append(dst, `"replyTo":{"type":"`...)
		dst = append(dst, to.Type.String()...)
		dst = append(dst, '"')
		if to.RequestID != "" {
			dst = append(dst, `,"requestId":`...)
			dst = appendString(dst, to.RequestID)
		}
		if to.StoreID != "" {
			dst = append(dst, `,"storeId":`...)
			dst = appendString(dst, to.StoreID)
		}
		dst = append(dst, '}')
	}
	return append(dst, "}}"...)
}

// appendStoreMembers appends `,"storeId":S,"head":H`.
func appendStoreMembers(dst []byte, storeID string, head Head) []byte {
	dst = append(dst, `,"storeId":`...)
	dst = appendString(dst, storeID)
	dst = append(dst, `,"head":`...)
	return AppendHead(dst, head)
}

// AppendHead appends a head object; at eventNumber 0 it carries no ids.
func AppendHead(dst []byte, h Head) []byte {
	dst = append(dst, `{"eventNumber":`...)
	dst = strconv.AppendInt(dst, h.EventNumber, 10)
	if h.EventNumber > 0 {
		dst = append(dst, `,"clientId":`...)
		dst = appendString(dst, h.ClientID)
		dst = append(dst, `,"sessionId":`...)
		dst = appendString(dst, h.SessionID)
	}
	return append(dst, '}')
}

func appendStrings(dst []byte, ss []string) []byte {
	dst = append(dst, '[')
	for i, s := range ss {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, s)
	}
	return append(dst, ']')
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
