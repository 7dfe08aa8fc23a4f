// Package protocol decodes and validates the LiveStore sync frames that
// clients send to the relay, and encodes the messages the relay itself
// sends.
//
// Decoding is built for the hot path: one pass over the frame both checks
// that it is strict JSON (RFC 8259, as encoding/json.Valid accepts it, with
// nesting bounded at 128 levels) and pulls out the handful of fields the
// relay routes on. A valid frame is decoded without heap allocations and
// without copying; the decoded fields alias the frame. Frames are forwarded
// to peers byte for byte, so nothing else is ever extracted.
package protocol

// Type is the kind of a client message.
type Type uint8

// Client message types. TypeUnknown is the zero value and never the type of
// a successfully decoded message.
const (
	TypeUnknown Type = iota
	TypePush
	TypePull
	TypePeerPull
	TypePeerPullResponse
	// NumTypes is one past the last type: the length of an array indexed
	// by Type.
	NumTypes
)

// String returns the wire name of t, or "unknown".
func (t Type) String() string {
	switch t {
	case TypePush:
		return "push"
	case TypePull:
		return "pull"
	case TypePeerPull:
		return "peer_pull"
	case TypePeerPullResponse:
		return "peer_pull_response"
	default:
		return "unknown"
	}
}

// Code is an error code carried by the server's error messages.
type Code uint8

// Error codes. The list is complete: the relay never sends any other code.
const (
	CodeInvalidMessage Code = iota + 1
	CodeUnsupportedType
	CodeClientMismatch
	CodeUnknownRequest
	CodeLimitExceeded
	CodeRateLimited
	CodeInternalError
	// CodeStoreConflict answers a join whose announced head forks from the
	// relay's: same eventNumber, other ids.
	CodeStoreConflict
	// CodeHeadMismatch answers a sequenced push whose first parent is not
	// the store's head.
	CodeHeadMismatch
	// NumCodes is one past the last code: the length of an array indexed
	// by Code.
	NumCodes
)

// String returns the wire name of c, or "unknown" for a value outside the
// list.
func (c Code) String() string {
	switch c {
	case CodeInvalidMessage:
		return "invalid_message"
	case CodeUnsupportedType:
		return "unsupported_type"
	case CodeClientMismatch:
		return "client_mismatch"
	case CodeUnknownRequest:
		return "unknown_request"
	case CodeLimitExceeded:
		return "limit_exceeded"
	case CodeRateLimited:
		return "rate_limited"
	case CodeInternalError:
		return "internal_error"
	case CodeStoreConflict:
		return "store_conflict"
	case CodeHeadMismatch:
		return "head_mismatch"
	default:
		return "unknown"
	}
}

// AllCodes returns every error code, in declaration order. The slice is new
// on each call and may be modified by the caller.
func AllCodes() []Code {
	codes := make([]Code, 0, NumCodes-1)
	for c := CodeInvalidMessage; c < NumCodes; c++ {
		codes = append(codes, c)
	}
	return codes
}

// Error describes why a frame was rejected. Message is a short, fixed text
// that never repeats client data, so it is safe to send back and to log.
type Error struct {
	Code    Code
	Message string
}

// Error returns the code and the message.
func (e *Error) Error() string {
	return e.Code.String() + ": " + e.Message
}

// Message is the decoded view of one client frame. It holds only what the
// relay needs for routing; the frame itself is what gets forwarded.
//
// Byte slices alias the decoded frame, so they are valid only as long as
// the frame is neither reused nor modified. The one exception is a JSON
// string that contained escape sequences: its unescaped value is a fresh
// copy. All byte slices hold unescaped string contents.
type Message struct {
	Type      Type
	ClientID  []byte
	SessionID []byte
	Timestamp int64

	// EventCount is the number of events of a push or a
	// peer_pull_response.
	EventCount int
	// LastEventTimestamp is the timestamp of the last event of a push or a
	// peer_pull_response, 0 when there are no events.
	LastEventTimestamp int64

	// SinceTimestamp is optional in a pull and always set for a peer_pull.
	SinceTimestamp    int64
	HasSinceTimestamp bool

	// RequestID is set for peer_pull and peer_pull_response.
	RequestID []byte
	// TargetClientID restricts a peer_pull to one peer; nil when absent.
	TargetClientID []byte

	// RetentionDays is optional in a peer_pull.
	RetentionDays    int64
	HasRetentionDays bool

	// HasMore is set for a peer_pull_response.
	HasMore bool

	// StoreID is payload.storeId, nil when absent: the message then takes
	// no part in a sequenced store.
	StoreID []byte
	// Head is the head a pull with StoreID announces.
	Head HeadRef
	// FirstParent is events[0].parentEventNumber and LastEvent the last
	// event's number and ids, for a push with StoreID and events.
	FirstParent int64
	LastEvent   HeadRef
	// SinceEventNumber is optional in a peer_pull with StoreID.
	SinceEventNumber    int64
	HasSinceEventNumber bool
}

// HeadRef is a store head as read from a frame: the number of the last
// event of a store and its ids. At EventNumber 0 the ids are nil.
type HeadRef struct {
	EventNumber int64
	ClientID    []byte
	SessionID   []byte
}

// Head is a store head as the relay keeps it: the last accepted event's
// number and ids, or EventNumber 0 (and no ids) for an empty store.
type Head struct {
	EventNumber int64
	ClientID    string
	SessionID   string
}

// Limits bounds what a single frame may carry.
type Limits struct {
	// MaxEventsPerPush caps the events of a push or a peer_pull_response.
	// Zero or less means DefaultMaxEventsPerPush.
	MaxEventsPerPush int
}

// DefaultMaxEventsPerPush is the event cap used when Limits leaves it unset.
const DefaultMaxEventsPerPush = 1000

// MaxIDLen is the longest clientId, sessionId, requestId, targetClientId or
// storeId accepted, in bytes after unescaping.
const MaxIDLen = 128

// ServerClientID is the clientId the relay uses for its own messages; no
// client may claim it.
const ServerClientID = "server"
