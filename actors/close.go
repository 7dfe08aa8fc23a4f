package actors

// CloseReason is why a connection ends. It is the one place where reasons
// map to WebSocket close codes, their short texts and metric labels.
type CloseReason uint8

// Close reasons, in no particular order.
const (
	closeNone CloseReason = iota
	// ClosePeer is a close the client started; the server echoes its code.
	ClosePeer
	// ClosePeerGone is a connection that ended without a close frame.
	ClosePeerGone
	// CloseGoingAway is sent to every connection when the server drains.
	CloseGoingAway
	// CloseProtocolError is a WebSocket framing violation (RFC 6455 §7.4.1).
	CloseProtocolError
	// CloseInvalidUTF8 is a text message that is not valid UTF-8.
	CloseInvalidUTF8
	// CloseLiveness is a connection silent for two ping intervals.
	CloseLiveness
	// CloseTooBig is a message over the size limit.
	CloseTooBig
	// CloseInternal is a failure inside the server.
	CloseInternal
	// CloseTokenExpired is a connection whose token reached its expiry.
	CloseTokenExpired
	// CloseReplaced is a connection replaced by a newer one of the same client and session.
	CloseReplaced
	// CloseSlowConsumer is a connection whose send queue passed its bound.
	CloseSlowConsumer
	// CloseRehomed is a connection whose room moved to another node of
	// the cluster (or whose room's node left): the client reconnects.
	CloseRehomed
	closeReasonCount
)

// Code is the WebSocket close code sent for the reason. ClosePeer has none
// of its own: the peer's code is echoed.
func (r CloseReason) Code() uint16 {
	switch r {
	case ClosePeer:
		return 1000
	case ClosePeerGone:
		return 1006
	case CloseGoingAway:
		return 1001
	case CloseProtocolError:
		return 1002
	case CloseInvalidUTF8:
		return 1007
	case CloseLiveness:
		return 1008
	case CloseTooBig:
		return 1009
	case CloseInternal:
		return 1011
	case CloseTokenExpired:
		return 4001
	case CloseReplaced:
		return 4002
	case CloseSlowConsumer:
		return 4003
	case CloseRehomed:
		return 1012
	}
	return 1000
}

// Text is the close frame's reason text, short enough for a control frame.
func (r CloseReason) Text() string {
	switch r {
	case ClosePeer:
		return ""
	case ClosePeerGone:
		return "connection lost"
	case CloseGoingAway:
		return "server shutting down"
	case CloseProtocolError:
		return "protocol error"
	case CloseInvalidUTF8:
		return "invalid utf-8"
	case CloseLiveness:
		return "ping timeout"
	case CloseTooBig:
		return "message too big"
	case CloseInternal:
		return "internal error"
	case CloseTokenExpired:
		return "token expired"
	case CloseReplaced:
		return "replaced by a newer connection"
	case CloseSlowConsumer:
		return "slow consumer"
	case CloseRehomed:
		return "room moved; reconnect"
	}
	return ""
}

// String is the reason's metric and log label.
func (r CloseReason) String() string {
	switch r {
	case ClosePeer:
		return "peer"
	case ClosePeerGone:
		return "peer_gone"
	case CloseGoingAway:
		return "going_away"
	case CloseProtocolError:
		return "protocol_error"
	case CloseInvalidUTF8:
		return "invalid_utf8"
	case CloseLiveness:
		return "ping_timeout"
	case CloseTooBig:
		return "too_big"
	case CloseInternal:
		return "internal_error"
	case CloseTokenExpired:
		return "token_expired"
	case CloseReplaced:
		return "replaced"
	case CloseSlowConsumer:
		return "slow_consumer"
	case CloseRehomed:
		return "rehomed"
	}
	return "none"
}

// sendsFrame reports whether the server writes a close frame for the reason.
func (r CloseReason) sendsFrame() bool { return r != ClosePeerGone && r != closeNone }
