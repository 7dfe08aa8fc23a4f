package protocol

import (
	"strconv"
	"unicode/utf8"
)

// Rejections. They are shared, read-only values so that rejecting a frame
// costs no allocation; their texts are fixed and never quote the frame.
var (
	errNotJSONObject = &Error{CodeInvalidMessage, "message must be a valid JSON object"}
	errTooDeep       = &Error{CodeInvalidMessage, "message must be a JSON object nested at most " + strconv.Itoa(maxDepth) + " levels deep"}
	errType          = &Error{CodeInvalidMessage, "type must be a string"}
	errTypeDup       = &Error{CodeInvalidMessage, "type appears more than once"}
	errUnsupported   = &Error{CodeUnsupportedType, "unsupported message type"}

	errClientID       = &Error{CodeInvalidMessage, "clientId must be a UTF-8 string of 1 to 128 bytes"}
	errClientIDDup    = &Error{CodeInvalidMessage, "clientId appears more than once"}
	errClientIDServer = &Error{CodeInvalidMessage, `clientId "server" is reserved`}
	errSessionID      = &Error{CodeInvalidMessage, "sessionId must be a UTF-8 string of 1 to 128 bytes"}
	errSessionIDDup   = &Error{CodeInvalidMessage, "sessionId appears more than once"}
	errTimestamp      = &Error{CodeInvalidMessage, "timestamp must be an integer"}
	errTimestampDup   = &Error{CodeInvalidMessage, "timestamp appears more than once"}
	errPayload        = &Error{CodeInvalidMessage, "payload must be an object"}
	errPayloadDup     = &Error{CodeInvalidMessage, "payload appears more than once"}

	errEvents            = &Error{CodeInvalidMessage, "payload.events must be an array"}
	errEventsDup         = &Error{CodeInvalidMessage, "payload.events appears more than once"}
	errSinceTimestamp    = &Error{CodeInvalidMessage, "payload.sinceTimestamp must be an integer >= 0"}
	errSinceTimestampDup = &Error{CodeInvalidMessage, "payload.sinceTimestamp appears more than once"}
	errRequestID         = &Error{CodeInvalidMessage, "payload.requestId must be a UTF-8 string of 1 to 128 bytes"}
	errRequestIDDup      = &Error{CodeInvalidMessage, "payload.requestId appears more than once"}
	errRetentionDays     = &Error{CodeInvalidMessage, "payload.retentionDays must be an integer >= 0"}
	errRetentionDaysDup  = &Error{CodeInvalidMessage, "payload.retentionDays appears more than once"}
	errTargetClientID    = &Error{CodeInvalidMessage, "payload.targetClientId must be a UTF-8 string of 1 to 128 bytes"}
	errTargetClientIDDup = &Error{CodeInvalidMessage, "payload.targetClientId appears more than once"}
	errHasMore           = &Error{CodeInvalidMessage, "payload.hasMore must be a boolean"}
	errHasMoreDup        = &Error{CodeInvalidMessage, "payload.hasMore appears more than once"}
	errTooManyEvents     = &Error{CodeLimitExceeded, "payload.events holds more events than allowed"}

	errEvent             = &Error{CodeInvalidMessage, "payload.events[] must be an object"}
	errEventName         = &Error{CodeInvalidMessage, "payload.events[].eventName must be a non-empty string"}
	errEventNameDup      = &Error{CodeInvalidMessage, "payload.events[].eventName appears more than once"}
	errEventNumber       = &Error{CodeInvalidMessage, "payload.events[].eventNumber must be an integer >= 0"}
	errEventNumberDup    = &Error{CodeInvalidMessage, "payload.events[].eventNumber appears more than once"}
	errEventClientID     = &Error{CodeInvalidMessage, "payload.events[].clientId must be a string"}
	errEventClientIDDup  = &Error{CodeInvalidMessage, "payload.events[].clientId appears more than once"}
	errEventSessionID    = &Error{CodeInvalidMessage, "payload.events[].sessionId must be a string"}
	errEventSessionIDDup = &Error{CodeInvalidMessage, "payload.events[].sessionId appears more than once"}
	errEventTimestamp    = &Error{CodeInvalidMessage, "payload.events[].timestamp must be an integer"}
	errEventTimestampDup = &Error{CodeInvalidMessage, "payload.events[].timestamp appears more than once"}
	errEventData         = &Error{CodeInvalidMessage, "payload.events[].data is required"}
	errEventDataDup      = &Error{CodeInvalidMessage, "payload.events[].data appears more than once"}

	errStoreID             = &Error{CodeInvalidMessage, "payload.storeId must be a UTF-8 string of 1 to 128 bytes"}
	errStoreIDDup          = &Error{CodeInvalidMessage, "payload.storeId appears more than once"}
	errHead                = &Error{CodeInvalidMessage, "payload.head must be an object"}
	errHeadDup             = &Error{CodeInvalidMessage, "payload.head appears more than once"}
	errHeadNumber          = &Error{CodeInvalidMessage, "payload.head.eventNumber must be an integer >= 0"}
	errHeadNumberDup       = &Error{CodeInvalidMessage, "payload.head.eventNumber appears more than once"}
	errHeadClientID        = &Error{CodeInvalidMessage, "payload.head.clientId must be a string when eventNumber is above 0"}
	errHeadClientIDDup     = &Error{CodeInvalidMessage, "payload.head.clientId appears more than once"}
	errHeadSessionID       = &Error{CodeInvalidMessage, "payload.head.sessionId must be a string when eventNumber is above 0"}
	errHeadSessionIDDup    = &Error{CodeInvalidMessage, "payload.head.sessionId appears more than once"}
	errSinceEventNumber    = &Error{CodeInvalidMessage, "payload.sinceEventNumber must be an integer >= 0"}
	errSinceEventNumberDup = &Error{CodeInvalidMessage, "payload.sinceEventNumber appears more than once"}
	errParent              = &Error{CodeInvalidMessage, "payload.events[].parentEventNumber must be an integer >= 0"}
	errParentDup           = &Error{CodeInvalidMessage, "payload.events[].parentEventNumber appears more than once"}
	errChain               = &Error{CodeInvalidMessage, "payload.events[] must form a chain: each parentEventNumber the previous eventNumber, each eventNumber its parent + 1"}
)

// Decoder decodes client frames. It holds only configuration, so one
// Decoder may serve any number of goroutines at once.
type Decoder struct {
	limits Limits
}

// NewDecoder returns a Decoder enforcing l, with unset limits replaced by
// their defaults.
func NewDecoder(l Limits) *Decoder {
	if l.MaxEventsPerPush <= 0 {
		l.MaxEventsPerPush = DefaultMaxEventsPerPush
	}
	return &Decoder{limits: l}
}

// Decode validates frame, the text of one WebSocket message, and fills m
// with its routing fields. It returns nil or an *Error.
//
// Checks come in a fixed order, and the first failure wins: the frame must
// be a valid JSON object; its type must be a string; the type must be a
// known one (else CodeUnsupportedType); then the envelope and the payload
// are checked for that type (CodeInvalidMessage), payload.storeId first
// when present; a sequenced push's event chain is checked after its
// events; last, the number of events is checked against the limit
// (CodeLimitExceeded). On failure, m is left partly filled; its Type is
// set once the type is known, and StoreID once it is valid.
//
// Identifiers (clientId, sessionId, requestId, targetClientId, storeId)
// must also be valid UTF-8 once unescaped; other strings are not checked
// for it, since the transport validates the frame's encoding as a whole.
//
// Decode allocates only for identifiers and head ids written with escape
// sequences. It never panics, and it does not modify frame.
func (d *Decoder) Decode(frame []byte, m *Message) error {
	*m = Message{}
	var f frameFields
	s := scanner{data: frame}
	if !s.frame(&f) {
		if s.deep {
			return errTooDeep
		}
		return errNotJSONObject
	}
	maxEvents := DefaultMaxEventsPerPush
	if d != nil && d.limits.MaxEventsPerPush > 0 {
		maxEvents = d.limits.MaxEventsPerPush
	}
	if err := f.fill(frame, m, maxEvents); err != nil {
		return err
	}
	return nil
}

// presence tells what became of one member the relay reads.
type presence uint8

const (
	absent    presence = iota
	present            // of the expected JSON type
	malformed          // of another JSON type, or out of representable range
	repeated           // named more than once in its object
)

// mark records one occurrence of a member; ok tells whether its value had
// the expected type.
func (p *presence) mark(ok bool) {
	switch {
	case *p != absent:
		*p = repeated
	case ok:
		*p = present
	default:
		*p = malformed
	}
}

// check maps a member's presence to nil or the matching rejection. An
// absent member counts as malformed: callers check optional members for
// absence first.
func (p presence) check(bad, dup *Error) *Error {
	switch p {
	case present:
		return nil
	case repeated:
		return dup
	default:
		return bad
	}
}

// stringMember records a string member as a span of the frame, so that
// nothing is copied until the frame is known to be valid.
type stringMember struct {
	presence
	escaped    bool
	start, end int
}

type intMember struct {
	presence
	val int64
}

type boolMember struct {
	presence
	val bool
}

// frameFields collects what the scan found. Problems other than syntax
// errors are only recorded, because which of them matter depends on the
// type, and the type may come last in the object.
type frameFields struct {
	typ       stringMember
	clientID  stringMember
	sessionID stringMember
	timestamp intMember
	payload   presence

	events         presence
	eventCount     int
	lastTimestamp  int64
	eventErr       *Error // the first invalid event's problem
	sinceTimestamp intMember
	requestID      stringMember
	retentionDays  intMember
	targetClientID stringMember
	hasMore        boolMember

	storeID          stringMember
	head             headFields
	sinceEventNumber intMember
	// The chain of a sequenced push, checked as the events go by; it
	// matters only when the push turns out to hold storeId.
	chainErr      *Error
	firstParent   int64
	lastNumber    int64
	lastClientID  stringMember
	lastSessionID stringMember
}

// headFields is what a payload.head object held.
type headFields struct {
	presence
	number    intMember
	clientID  stringMember
	sessionID stringMember
}

// frame scans the whole document, which must be a single object.
func (s *scanner) frame(f *frameFields) bool {
	s.skipSpace()
	if s.peek() != '{' || !s.topObject(f) {
		return false
	}
	s.skipSpace()
	return s.pos == len(s.data)
}

// Nesting levels of the objects the relay reads into.
const (
	topDepth     = 1
	payloadDepth = 2
	eventsDepth  = 3
	eventDepth   = 4
	headDepth    = 3
)

func (s *scanner) topObject(f *frameFields) bool {
	if s.open('}') {
		return true
	}
	var buf [nameBufLen]byte
	for {
		raw, escaped, ok := s.key()
		if !ok {
			return false
		}
		switch string(name(&buf, raw, escaped)) {
		case "type":
			ok = s.stringMember(&f.typ, topDepth)
		case "clientId":
			ok = s.stringMember(&f.clientID, topDepth)
		case "sessionId":
			ok = s.stringMember(&f.sessionID, topDepth)
		case "timestamp":
			ok = s.intMember(&f.timestamp, topDepth)
		case "payload":
			if s.peek() == '{' {
				f.payload.mark(true)
				ok = s.payloadObject(f)
			} else {
				f.payload.mark(false)
				ok = s.skipValue(topDepth)
			}
		default:
			ok = s.skipValue(topDepth)
		}
		if !ok {
			return false
		}
		more, ok := s.next('}')
		if !ok || !more {
			return ok
		}
	}
}

// payloadObject reads the members of every message type at once, since the
// type may not be known yet.
func (s *scanner) payloadObject(f *frameFields) bool {
	if s.open('}') {
		return true
	}
	var buf [nameBufLen]byte
	for {
		raw, escaped, ok := s.key()
		if !ok {
			return false
		}
		switch string(name(&buf, raw, escaped)) {
		case "events":
			if s.peek() == '[' {
				f.events.mark(true)
				ok = s.eventsArray(f)
			} else {
				f.events.mark(false)
				ok = s.skipValue(payloadDepth)
			}
		case "sinceTimestamp":
			ok = s.intMember(&f.sinceTimestamp, payloadDepth)
		case "requestId":
			ok = s.stringMember(&f.requestID, payloadDepth)
		case "retentionDays":
			ok = s.intMember(&f.retentionDays, payloadDepth)
		case "targetClientId":
			ok = s.stringMember(&f.targetClientID, payloadDepth)
		case "hasMore":
			ok = s.boolMember(&f.hasMore, payloadDepth)
		case "storeId":
			ok = s.stringMember(&f.storeID, payloadDepth)
		case "sinceEventNumber":
			ok = s.intMember(&f.sinceEventNumber, payloadDepth)
		case "head":
			if s.peek() == '{' && f.head.presence == absent {
				f.head.mark(true)
				ok = s.headObject(&f.head)
			} else {
				f.head.mark(s.peek() == '{')
				ok = s.skipValue(payloadDepth)
			}
		default:
			ok = s.skipValue(payloadDepth)
		}
		if !ok {
			return false
		}
		more, ok := s.next('}')
		if !ok || !more {
			return ok
		}
	}
}

// headObject reads a store head. Only a first head object is read into h;
// a repeated one makes the member invalid anyway.
func (s *scanner) headObject(h *headFields) bool {
	if s.open('}') {
		return true
	}
	var buf [nameBufLen]byte
	for {
		raw, escaped, ok := s.key()
		if !ok {
			return false
		}
		switch string(name(&buf, raw, escaped)) {
		case "eventNumber":
			ok = s.intMember(&h.number, headDepth)
		case "clientId":
			ok = s.stringMember(&h.clientID, headDepth)
		case "sessionId":
			ok = s.stringMember(&h.sessionID, headDepth)
		default:
			ok = s.skipValue(headDepth)
		}
		if !ok {
			return false
		}
		more, ok := s.next('}')
		if !ok || !more {
			return ok
		}
	}
}

func (s *scanner) eventsArray(f *frameFields) bool {
	if s.open(']') {
		return true
	}
	for {
		if s.peek() == '{' {
			if !s.eventObject(f) {
				return false
			}
		} else {
			if f.eventErr == nil {
				f.eventErr = errEvent
			}
			if !s.skipValue(eventsDepth) {
				return false
			}
		}
		f.eventCount++
		more, ok := s.next(']')
		if !ok || !more {
			return ok
		}
	}
}

func (s *scanner) eventObject(f *frameFields) bool {
	var evName, timestamp, data presence
	var number, parent intMember
	var clientID, sessionID stringMember
	var ts int64
	if !s.open('}') {
		var buf [nameBufLen]byte
		for {
			raw, escaped, ok := s.key()
			if !ok {
				return false
			}
			switch string(name(&buf, raw, escaped)) {
			case "eventName":
				var m stringMember
				if ok = s.stringMember(&m, eventDepth); ok {
					evName.mark(m.presence == present && m.end > m.start)
				}
			case "eventNumber":
				ok = s.intMember(&number, eventDepth)
			case "parentEventNumber":
				ok = s.intMember(&parent, eventDepth)
			case "clientId":
				ok = s.stringMember(&clientID, eventDepth)
			case "sessionId":
				ok = s.stringMember(&sessionID, eventDepth)
			case "timestamp":
				var m intMember
				if ok = s.intMember(&m, eventDepth); ok {
					timestamp.mark(m.presence == present)
					ts = m.val
				}
			case "data":
				data.mark(true)
				ok = s.skipValue(eventDepth)
			default:
				ok = s.skipValue(eventDepth)
			}
			if !ok {
				return false
			}
			more, ok := s.next('}')
			if !ok {
				return false
			}
			if !more {
				break
			}
		}
	}
	if number.presence == present && number.val < 0 {
		number.presence = malformed
	}
	if f.eventErr == nil {
		f.eventErr = firstError(
			evName.check(errEventName, errEventNameDup),
			number.check(errEventNumber, errEventNumberDup),
			clientID.check(errEventClientID, errEventClientIDDup),
			sessionID.check(errEventSessionID, errEventSessionIDDup),
			timestamp.check(errEventTimestamp, errEventTimestampDup),
			data.check(errEventData, errEventDataDup),
		)
	}
	if f.chainErr == nil {
		f.chainErr = f.link(number, parent)
	}
	f.lastTimestamp = ts
	f.lastNumber = number.val
	f.lastClientID, f.lastSessionID = clientID, sessionID
	return true
}

// link checks that an event extends the chain of those before it. An
// event whose own eventNumber is invalid is left to eventErr.
func (f *frameFields) link(number, parent intMember) *Error {
	if parent.presence == present && parent.val < 0 {
		parent.presence = malformed
	}
	if err := parent.check(errParent, errParentDup); err != nil {
		return err
	}
	if number.presence != present {
		return nil
	}
	if f.eventCount == 0 {
		f.firstParent = parent.val
	} else if parent.val != f.lastNumber {
		return errChain
	}
	if parent.val == 1<<63-1 || number.val != parent.val+1 {
		return errChain
	}
	return nil
}

func firstError(errs ...*Error) *Error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// stringMember reads a member that should be a string. Only the first
// occurrence's span is kept; a repeat makes the member invalid anyway.
func (s *scanner) stringMember(m *stringMember, depth int) bool {
	if s.peek() != '"' {
		m.mark(false)
		return s.skipValue(depth)
	}
	start := s.pos + 1
	escaped, ok := s.skipString()
	if !ok {
		return false
	}
	if m.presence == absent {
		m.escaped, m.start, m.end = escaped, start, s.pos-1
	}
	m.mark(true)
	return true
}

// intMember reads a member that should be an integer.
func (s *scanner) intMember(m *intMember, depth int) bool {
	if c := s.peek(); c != '-' && !isDigit(c) {
		m.mark(false)
		return s.skipValue(depth)
	}
	v, isInt, ok := s.number()
	if !ok {
		return false
	}
	if m.presence == absent {
		m.val = v
	}
	m.mark(isInt)
	return true
}

// boolMember reads a member that should be true or false.
func (s *scanner) boolMember(m *boolMember, depth int) bool {
	c := s.peek()
	if c != 't' && c != 'f' {
		m.mark(false)
		return s.skipValue(depth)
	}
	if !s.skipValue(depth) {
		return false
	}
	if m.presence == absent {
		m.val = c == 't'
	}
	m.mark(true)
	return true
}

// fill turns the scan's findings into m, or into the rejection that comes
// first in Decode's documented order.
func (f *frameFields) fill(frame []byte, m *Message, maxEvents int) *Error {
	if err := f.typ.check(errType, errTypeDup); err != nil {
		return err
	}
	var buf [nameBufLen]byte
	switch string(name(&buf, frame[f.typ.start:f.typ.end], f.typ.escaped)) {
	case "push":
		m.Type = TypePush
	case "pull":
		m.Type = TypePull
	case "peer_pull":
		m.Type = TypePeerPull
	case "peer_pull_response":
		m.Type = TypePeerPullResponse
	default:
		return errUnsupported
	}

	if err := f.clientID.check(errClientID, errClientIDDup); err != nil {
		return err
	}
	var ok bool
	if m.ClientID, ok = identifier(frame, &f.clientID); !ok {
		return errClientID
	}
	if string(m.ClientID) == ServerClientID {
		return errClientIDServer
	}
	if err := f.sessionID.check(errSessionID, errSessionIDDup); err != nil {
		return err
	}
	if m.SessionID, ok = identifier(frame, &f.sessionID); !ok {
		return errSessionID
	}
	if err := f.timestamp.check(errTimestamp, errTimestampDup); err != nil {
		return err
	}
	m.Timestamp = f.timestamp.val
	if err := f.payload.check(errPayload, errPayloadDup); err != nil {
		return err
	}
	if f.storeID.presence != absent {
		if err := f.storeID.check(errStoreID, errStoreIDDup); err != nil {
			return err
		}
		if m.StoreID, ok = identifier(frame, &f.storeID); !ok {
			return errStoreID
		}
	}
	sequenced := m.StoreID != nil

	switch m.Type {
	case TypePush:
		if err := f.fillEvents(m, maxEvents, sequenced); err != nil {
			return err
		}
		if sequenced && m.EventCount > 0 {
			m.FirstParent = f.firstParent
			m.LastEvent = HeadRef{
				EventNumber: f.lastNumber,
				ClientID:    stringValue(frame, &f.lastClientID),
				SessionID:   stringValue(frame, &f.lastSessionID),
			}
		}
	case TypePull:
		if f.sinceTimestamp.presence != absent {
			if err := f.fillSinceTimestamp(m); err != nil {
				return err
			}
		}
		if sequenced {
			if err := f.fillHead(frame, m); err != nil {
				return err
			}
		}
	case TypePeerPull:
		if err := f.fillRequestID(frame, m); err != nil {
			return err
		}
		if err := f.fillSinceTimestamp(m); err != nil {
			return err
		}
		if f.retentionDays.presence != absent {
			err := f.retentionDays.check(errRetentionDays, errRetentionDaysDup)
			if err == nil && f.retentionDays.val < 0 {
				err = errRetentionDays
			}
			if err != nil {
				return err
			}
			m.RetentionDays, m.HasRetentionDays = f.retentionDays.val, true
		}
		if f.targetClientID.presence != absent {
			if err := f.targetClientID.check(errTargetClientID, errTargetClientIDDup); err != nil {
				return err
			}
			if m.TargetClientID, ok = identifier(frame, &f.targetClientID); !ok {
				return errTargetClientID
			}
		}
		if sequenced && f.sinceEventNumber.presence != absent {
			err := f.sinceEventNumber.check(errSinceEventNumber, errSinceEventNumberDup)
			if err == nil && f.sinceEventNumber.val < 0 {
				err = errSinceEventNumber
			}
			if err != nil {
				return err
			}
			m.SinceEventNumber, m.HasSinceEventNumber = f.sinceEventNumber.val, true
		}
	case TypePeerPullResponse:
		if err := f.fillRequestID(frame, m); err != nil {
			return err
		}
		if err := f.hasMore.check(errHasMore, errHasMoreDup); err != nil {
			return err
		}
		m.HasMore = f.hasMore.val
		// The count limit is checked last, so it goes after hasMore.
		if err := f.fillEvents(m, maxEvents, false); err != nil {
			return err
		}
	}
	return nil
}

// fillEvents checks the events; chain asks for the chain of a sequenced
// push too. The count limit comes last, so that limit_exceeded answers
// only a push whose one fault is its size.
func (f *frameFields) fillEvents(m *Message, maxEvents int, chain bool) *Error {
	if err := f.events.check(errEvents, errEventsDup); err != nil {
		return err
	}
	if f.eventErr != nil {
		return f.eventErr
	}
	if chain && f.chainErr != nil {
		return f.chainErr
	}
	m.EventCount, m.LastEventTimestamp = f.eventCount, f.lastTimestamp
	if f.eventCount > maxEvents {
		return errTooManyEvents
	}
	return nil
}

// fillHead reads the head a pull announces. At eventNumber 0 the ids are
// not looked at, beyond the strictness every member gets.
func (f *frameFields) fillHead(frame []byte, m *Message) *Error {
	h := &f.head
	if err := h.check(errHead, errHeadDup); err != nil {
		return err
	}
	err := h.number.check(errHeadNumber, errHeadNumberDup)
	if err == nil && h.number.val < 0 {
		err = errHeadNumber
	}
	if err != nil {
		return err
	}
	m.Head.EventNumber = h.number.val
	if h.number.val == 0 {
		if h.clientID.presence == repeated {
			return errHeadClientIDDup
		}
		if h.sessionID.presence == repeated {
			return errHeadSessionIDDup
		}
		return nil
	}
	if err := h.clientID.check(errHeadClientID, errHeadClientIDDup); err != nil {
		return err
	}
	if err := h.sessionID.check(errHeadSessionID, errHeadSessionIDDup); err != nil {
		return err
	}
	m.Head.ClientID = stringValue(frame, &h.clientID)
	m.Head.SessionID = stringValue(frame, &h.sessionID)
	return nil
}

// stringValue returns a string member's value, aliasing the frame unless
// it holds escape sequences. The result is never nil for a present member.
func stringValue(frame []byte, m *stringMember) []byte {
	raw := frame[m.start:m.end:m.end]
	if !m.escaped {
		return raw
	}
	return appendUnescaped(make([]byte, 0, len(raw)), raw)
}

func (f *frameFields) fillSinceTimestamp(m *Message) *Error {
	err := f.sinceTimestamp.check(errSinceTimestamp, errSinceTimestampDup)
	if err == nil && f.sinceTimestamp.val < 0 {
		err = errSinceTimestamp
	}
	if err != nil {
		return err
	}
	m.SinceTimestamp, m.HasSinceTimestamp = f.sinceTimestamp.val, true
	return nil
}

func (f *frameFields) fillRequestID(frame []byte, m *Message) *Error {
	if err := f.requestID.check(errRequestID, errRequestIDDup); err != nil {
		return err
	}
	var ok bool
	if m.RequestID, ok = identifier(frame, &f.requestID); !ok {
		return errRequestID
	}
	return nil
}

// identifier returns the value of a string member that must be valid UTF-8
// of 1 to MaxIDLen bytes. Without escapes the value aliases the frame.
func identifier(frame []byte, m *stringMember) ([]byte, bool) {
	raw := frame[m.start:m.end]
	// An escape sequence is at most 6 bytes for one byte of value, so a
	// longer raw text cannot fit; checking first keeps a hostile frame from
	// making us allocate a large copy.
	if len(raw) == 0 || len(raw) > 6*MaxIDLen || (!m.escaped && len(raw) > MaxIDLen) {
		return nil, false
	}
	v := raw
	if m.escaped {
		v = appendUnescaped(make([]byte, 0, len(raw)), raw)
		if len(v) == 0 || len(v) > MaxIDLen {
			return nil, false
		}
	}
	if !utf8.Valid(v) {
		return nil, false
	}
	return v, true
}
