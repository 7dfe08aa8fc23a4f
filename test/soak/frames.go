package soak

import (
	"encoding/binary"
	"strconv"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// maxHeader is the longest client frame header: 2 bytes, an 8-byte length
// and a 4-byte mask.
const maxHeader = 14

// frameBuilder writes one client frame: a text payload built in place after
// room reserved for the header, so that header and payload leave in a single
// write without copying the payload.
type frameBuilder struct {
	b []byte
}

func (f *frameBuilder) reset() { f.b = append(f.b[:0], make([]byte, maxHeader)...) }

// finish masks the payload and returns the complete frame.
func (f *frameBuilder) finish(op ws.OpCode, mask [4]byte) []byte {
	payload := f.b[maxHeader:]
	n := len(payload)
	var hdr [maxHeader]byte
	hdr[0] = 0x80 | byte(op) // FIN: the tool never fragments
	h := 2
	switch {
	case n < 126:
		hdr[1] = 0x80 | byte(n)
	case n <= 0xffff:
		hdr[1] = 0x80 | 126
		binary.BigEndian.PutUint16(hdr[2:], uint16(n))
		h += 2
	default:
		hdr[1] = 0x80 | 127
		binary.BigEndian.PutUint64(hdr[2:], uint64(n))
		h += 8
	}
	copy(hdr[h:], mask[:])
	h += 4
	ws.Cipher(payload, mask, 0)
	start := maxHeader - h
	copy(f.b[start:], hdr[:h])
	return f.b[start:]
}

// appendJSONString appends s as a JSON string. User ids come from a token
// file and request ids from the wire, so they may need escaping.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// identity is what a device writes in every envelope, pre-encoded once.
type identity struct {
	clientID  string
	clientJS  []byte // clientId as a JSON string
	sessionJS []byte // sessionId as a JSON string
	userJS    []byte // user id as a JSON string
	storeJS   []byte // the sequenced store's id as a JSON string; nil for plain pushes
	device    int
}

func newIdentity(user, clientID, sessionID string, device int, store string) identity {
	id := identity{
		clientID:  clientID,
		clientJS:  appendJSONString(nil, clientID),
		sessionJS: appendJSONString(nil, sessionID),
		userJS:    appendJSONString(nil, user),
		device:    device,
	}
	if store != "" {
		id.storeJS = appendJSONString(nil, store)
	}
	return id
}

func (id *identity) appendEnvelope(b []byte, typ string, nowMs int64) []byte {
	b = append(b, `{"type":"`...)
	b = append(b, typ...)
	b = append(b, `","clientId":`...)
	b = append(b, id.clientJS...)
	b = append(b, `,"sessionId":`...)
	b = append(b, id.sessionJS...)
	b = append(b, `,"timestamp":`...)
	b = strconv.AppendInt(b, nowMs, 10)
	return append(b, `,"payload":`...)
}

// appendEventHead appends an event up to the opening brace of its data.
func (id *identity) appendEventHead(b []byte, name string, number uint64, ts int64) []byte {
	b = append(b, `{"eventName":"`...)
	b = append(b, name...)
	b = append(b, `","eventNumber":`...)
	b = strconv.AppendUint(b, number, 10)
	b = append(b, `,"clientId":`...)
	b = append(b, id.clientJS...)
	b = append(b, `,"sessionId":`...)
	b = append(b, id.sessionJS...)
	b = append(b, `,"timestamp":`...)
	b = strconv.AppendInt(b, ts, 10)
	return append(b, `,"data":{`...)
}

// pushSpec is what varies from one push to the next.
type pushSpec struct {
	seq         uint64 // per-sender push number, from 1
	eventNumber uint64 // first event's number; each event takes the next
	ts          int64  // every event's timestamp, unique per sender: the ack echoes it
	sentNs      int64
	events      int
	pad         int // padding bytes in each event's data
}

// appendPull is the binding pull every device sends first; with a store it
// also joins the store, announcing an empty head.
func (id *identity) appendPull(b []byte, nowMs int64) []byte {
	b = id.appendEnvelope(b, "pull", nowMs)
	if id.storeJS != nil {
		b = append(b, `{"sinceTimestamp":0,"storeId":`...)
		b = append(b, id.storeJS...)
		return append(b, `,"head":{"eventNumber":0}}}`...)
	}
	return append(b, `{"sinceTimestamp":0}}`...)
}

func (id *identity) appendPush(b []byte, nowMs int64, p pushSpec) []byte {
	b = id.appendEnvelope(b, "push", nowMs)
	if id.storeJS != nil {
		b = append(b, `{"storeId":`...)
		b = append(b, id.storeJS...)
		b = append(b, `,"events":[`...)
	} else {
		b = append(b, `{"events":[`...)
	}
	for i := 0; i < p.events; i++ {
		if i > 0 {
			b = append(b, ',')
		}
		b = id.appendEventHead(b, "soak.pushed", p.eventNumber+uint64(i), p.ts)
		if id.storeJS != nil {
			// Inserted before "data": each event's parent is the one before.
			b = b[:len(b)-len(`,"data":{`)]
			b = append(b, `,"parentEventNumber":`...)
			b = strconv.AppendUint(b, p.eventNumber+uint64(i)-1, 10)
			b = append(b, `,"data":{`...)
		}
		b = id.appendStamp(b, p.seq, i, p.sentNs)
		b = append(b, `,"p":"`...)
		for range p.pad {
			b = append(b, 'x')
		}
		b = append(b, `"}}`...)
	}
	return append(b, `]}}`...)
}

// appendStamp appends the fields of a stamp (without braces).
func (id *identity) appendStamp(b []byte, seq uint64, index int, sentNs int64) []byte {
	b = append(b, `"u":`...)
	b = append(b, id.userJS...)
	b = append(b, `,"d":`...)
	b = strconv.AppendInt(b, int64(id.device), 10)
	b = append(b, `,"c":`...)
	b = append(b, id.clientJS...)
	b = append(b, `,"n":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"i":`...)
	b = strconv.AppendInt(b, int64(index), 10)
	b = append(b, `,"t":`...)
	return strconv.AppendInt(b, sentNs, 10)
}

// stampBytes is the size of an event's data without padding, used to size
// the padding so that the data comes to about --event-bytes.
func stampBytes(id *identity) int {
	b := append([]byte{'{'}, id.appendStamp(nil, 1<<40, 0, 1<<61)...)
	return len(b) + len(`,"p":""}`)
}

func (id *identity) appendPeerPull(b []byte, nowMs int64, requestID string) []byte {
	b = id.appendEnvelope(b, "peer_pull", nowMs)
	b = append(b, `{"requestId":`...)
	b = appendJSONString(b, requestID)
	return append(b, `,"sinceTimestamp":0,"retentionDays":30}}`...)
}

// appendPeerPullResponse is one page of history: one event stamped with the
// responder, so that the requester can tell it comes from its own user.
func (id *identity) appendPeerPullResponse(b []byte, nowMs int64, requestID string, page int, hasMore bool) []byte {
	b = id.appendEnvelope(b, "peer_pull_response", nowMs)
	b = append(b, `{"requestId":`...)
	b = appendJSONString(b, requestID)
	b = append(b, `,"events":[`...)
	b = id.appendEventHead(b, "soak.history", uint64(page), nowMs)
	b = id.appendStamp(b, 0, page, 0)
	b = append(b, `}}],"hasMore":`...)
	b = strconv.AppendBool(b, hasMore)
	return append(b, `}}`...)
}
