package soak

import (
	"encoding/json"
	"errors"
	"fmt"
)

// inbound is every message the relay sends, reduced to the fields the
// checker reads; fields that do not apply to a type stay zero.
type inbound struct {
	Type, ClientID, Code, Message string
	HasReceivedCount              bool
	ReceivedCount, LastTimestamp  int64
	Events                        []stamp // each event's data
	RequestID                     string
	HasHasMore, HasMore           bool
	// HeadNumber is payload.head.eventNumber of a sequenced store's answer.
	HeadNumber int64
	HasHead    bool
}

var errSyntax = errors.New("malformed JSON")

// decodeInbound reads one message into m, reusing m's event slice. It is a
// purpose-built scanner rather than encoding/json: a worker decodes tens of
// thousands of messages a second and reflection made up most of its CPU.
// It skips whatever it does not know and fails on malformed JSON.
func decodeInbound(b []byte, m *inbound) error {
	events := m.Events[:0]
	*m = inbound{Events: events}
	s := scanner{b: b}
	err := s.object(func(key []byte) error {
		switch string(key) {
		case "type":
			return s.str(&m.Type)
		case "clientId":
			return s.str(&m.ClientID)
		case "code":
			return s.str(&m.Code)
		case "message":
			return s.str(&m.Message)
		case "payload":
			return s.payload(m)
		}
		return s.skip()
	})
	if err != nil {
		return err
	}
	if s.ws(); s.i != len(s.b) {
		return fmt.Errorf("%w: trailing data at %d", errSyntax, s.i)
	}
	return nil
}

type scanner struct {
	b []byte
	i int
}

func (s *scanner) fail(what string) error {
	return fmt.Errorf("%w: %s at offset %d", errSyntax, what, s.i)
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\r', '\n':
			s.i++
		default:
			return
		}
	}
}

// peek skips white space and returns the next byte, 0 at the end.
func (s *scanner) peek() byte {
	s.ws()
	if s.i >= len(s.b) {
		return 0
	}
	return s.b[s.i]
}

func (s *scanner) expect(c byte) error {
	if s.peek() != c {
		return s.fail("expected " + string(c))
	}
	s.i++
	return nil
}

// object calls field for each key; field must consume the value.
func (s *scanner) object(field func(key []byte) error) error {
	if err := s.expect('{'); err != nil {
		return err
	}
	if s.peek() == '}' {
		s.i++
		return nil
	}
	for {
		key, esc, err := s.rawString()
		if err != nil {
			return err
		}
		if err := s.expect(':'); err != nil {
			return err
		}
		if esc {
			// An escaped key cannot be one of ours written plainly; the
			// relay forwards bytes as sent, and the tool never escapes keys.
			err = s.skip()
		} else {
			err = field(key)
		}
		if err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return nil
		default:
			return s.fail("expected , or }")
		}
	}
}

// array calls elem for each element; elem must consume it.
func (s *scanner) array(elem func() error) error {
	if err := s.expect('['); err != nil {
		return err
	}
	if s.peek() == ']' {
		s.i++
		return nil
	}
	for {
		if err := elem(); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			return nil
		default:
			return s.fail("expected , or ]")
		}
	}
}

// rawString returns the bytes between the quotes of a string and whether
// they hold escapes.
func (s *scanner) rawString() (raw []byte, escaped bool, err error) {
	if s.peek() != '"' {
		return nil, false, s.fail("expected string")
	}
	start := s.i + 1
	for i := start; i < len(s.b); i++ {
		switch c := s.b[i]; {
		case c == '\\':
			escaped = true
			i++
		case c == '"':
			s.i = i + 1
			return s.b[start:i], escaped, nil
		case c < 0x20:
			return nil, false, s.fail("control character in string")
		}
	}
	return nil, false, s.fail("unterminated string")
}

func (s *scanner) str(dst *string) error {
	s.ws()
	start := s.i
	raw, escaped, err := s.rawString()
	if err != nil {
		return err
	}
	if !escaped {
		*dst = string(raw)
		return nil
	}
	// Rare: let the standard library apply the escapes.
	if err := json.Unmarshal(s.b[start:s.i], dst); err != nil {
		return fmt.Errorf("%w: string: %w", errSyntax, err)
	}
	return nil
}

// int reads an integer; a fraction or exponent is an error, as no field the
// tool reads may have one.
func (s *scanner) int(dst *int64) error {
	s.ws()
	neg := false
	if s.i < len(s.b) && s.b[s.i] == '-' {
		neg = true
		s.i++
	}
	start := s.i
	var n int64
	if s.i+1 < len(s.b) && s.b[s.i] == '0' && s.b[s.i+1] >= '0' && s.b[s.i+1] <= '9' {
		return s.fail("leading zero")
	}
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		d := int64(s.b[s.i] - '0')
		if n > (1<<63-1-d)/10 {
			return s.fail("integer overflow")
		}
		n = n*10 + d
		s.i++
	}
	if s.i == start {
		return s.fail("expected integer")
	}
	if s.i < len(s.b) {
		switch s.b[s.i] {
		case '.', 'e', 'E':
			return s.fail("expected integer")
		}
	}
	if neg {
		n = -n
	}
	*dst = n
	return nil
}

func (s *scanner) literal(word string) bool {
	if len(s.b)-s.i >= len(word) && string(s.b[s.i:s.i+len(word)]) == word {
		s.i += len(word)
		return true
	}
	return false
}

func (s *scanner) bool(dst *bool) error {
	s.ws()
	switch {
	case s.literal("true"):
		*dst = true
	case s.literal("false"):
		*dst = false
	default:
		return s.fail("expected boolean")
	}
	return nil
}

// skip consumes any value, checking its syntax.
func (s *scanner) skip() error {
	switch c := s.peek(); {
	case c == '"':
		_, _, err := s.rawString()
		return err
	case c == '{':
		return s.object(func([]byte) error { return s.skip() })
	case c == '[':
		return s.array(s.skip)
	case c == 't':
		if s.literal("true") {
			return nil
		}
	case c == 'f':
		if s.literal("false") {
			return nil
		}
	case c == 'n':
		if s.literal("null") {
			return nil
		}
	case c == '-' || c >= '0' && c <= '9':
		return s.number()
	}
	return s.fail("expected value")
}

// number consumes a JSON number of any form.
func (s *scanner) number() error {
	start := s.i
	if s.b[s.i] == '-' {
		s.i++
	}
	digits := func() int {
		n := 0
		for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
			s.i++
			n++
		}
		return n
	}
	lead := s.i
	if n := digits(); n == 0 || n > 1 && s.b[lead] == '0' {
		return s.fail("expected a number without leading zeros")
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if digits() == 0 {
			return s.fail("expected digit")
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if digits() == 0 {
			return s.fail("expected digit")
		}
	}
	if s.i == start {
		return s.fail("expected number")
	}
	return nil
}

func (s *scanner) payload(m *inbound) error {
	if s.peek() != '{' {
		return s.skip()
	}
	return s.object(func(key []byte) error {
		switch string(key) {
		case "receivedCount":
			m.HasReceivedCount = true
			return s.int(&m.ReceivedCount)
		case "lastTimestamp":
			return s.int(&m.LastTimestamp)
		case "requestId":
			return s.str(&m.RequestID)
		case "hasMore":
			m.HasHasMore = true
			return s.bool(&m.HasMore)
		case "head":
			if s.peek() != '{' {
				return s.skip()
			}
			return s.object(func(key []byte) error {
				if string(key) != "eventNumber" {
					return s.skip()
				}
				m.HasHead = true
				return s.int(&m.HeadNumber)
			})
		case "events":
			if s.peek() != '[' {
				return s.skip()
			}
			return s.array(func() error {
				m.Events = append(m.Events, stamp{})
				return s.event(&m.Events[len(m.Events)-1])
			})
		}
		return s.skip()
	})
}

func (s *scanner) event(st *stamp) error {
	if s.peek() != '{' {
		return s.skip()
	}
	return s.object(func(key []byte) error {
		if string(key) == "eventNumber" {
			if c := s.peek(); c == '-' || c >= '0' && c <= '9' {
				return s.int(&st.Number)
			}
		}
		if string(key) != "data" || s.peek() != '{' {
			return s.skip()
		}
		return s.stamp(st)
	})
}

// stamp reads the tool's own fields out of an event's data. Data written by
// anyone else decodes to a zero stamp, which the checker calls foreign.
func (s *scanner) stamp(st *stamp) error {
	return s.object(func(key []byte) error {
		var n int64
		switch string(key) {
		case "u":
			if s.peek() == '"' {
				return s.str(&st.User)
			}
		case "c":
			if s.peek() == '"' {
				return s.str(&st.Client)
			}
		case "d", "n", "i", "t":
			if c := s.peek(); c == '-' || c >= '0' && c <= '9' {
				save := s.i
				if err := s.int(&n); err != nil {
					s.i = save
					return s.skip()
				}
				switch key[0] {
				case 'd':
					st.Device = int(n)
				case 'n':
					st.Seq = uint64(n)
				case 'i':
					st.Index = int(n)
				case 't':
					st.SentNs = n
				}
				return nil
			}
		}
		return s.skip()
	})
}
