package protocol

import (
	"encoding/binary"
	"math/bits"
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth bounds container nesting. encoding/json allows far deeper
// documents, but no sync message needs them and the bound keeps the
// recursive scanner's stack small whatever a client sends.
const maxDepth = 128

// scanner walks a JSON document. Every method that returns ok=false has met
// a syntax error (or excessive nesting); the document is then rejected as a
// whole, so the position after a failure does not matter.
type scanner struct {
	data []byte
	pos  int
	deep bool // the failure was nesting beyond maxDepth, not syntax
}

func (s *scanner) peek() byte {
	if s.pos < len(s.data) {
		return s.data[s.pos]
	}
	return 0 // NUL is invalid wherever peek's answer is looked at
}

func (s *scanner) skipSpace() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// open consumes the opening bracket at pos and the whitespace after it. It
// reports whether the container is empty, in which case its closing
// bracket has been consumed too.
func (s *scanner) open(closing byte) (empty bool) {
	s.pos++
	s.skipSpace()
	if s.peek() == closing {
		s.pos++
		return true
	}
	return false
}

// next consumes the separator after a container element. more is true
// after a comma, false after the closing bracket.
func (s *scanner) next(closing byte) (more, ok bool) {
	s.skipSpace()
	switch s.peek() {
	case ',':
		s.pos++
		s.skipSpace()
		return true, true
	case closing:
		s.pos++
		return false, true
	}
	return false, false
}

// key consumes an object member's name and colon and the whitespace up to
// the value. raw is the name's content between the quotes.
func (s *scanner) key() (raw []byte, escaped, ok bool) {
	if s.peek() != '"' {
		return nil, false, false
	}
	start := s.pos + 1
	if escaped, ok = s.skipString(); !ok {
		return nil, false, false
	}
	raw = s.data[start : s.pos-1]
	s.skipSpace()
	if s.peek() != ':' {
		return nil, false, false
	}
	s.pos++
	s.skipSpace()
	return raw, escaped, true
}

// skipValue consumes one value of any kind. depth is the nesting level of
// the container holding it.
func (s *scanner) skipValue(depth int) bool {
	switch c := s.peek(); c {
	case '{':
		return s.skipObject(depth + 1)
	case '[':
		return s.skipArray(depth + 1)
	case '"':
		_, ok := s.skipString()
		return ok
	case 't':
		return s.literal("true")
	case 'f':
		return s.literal("false")
	case 'n':
		return s.literal("null")
	default:
		if c == '-' || isDigit(c) {
			_, _, ok := s.number()
			return ok
		}
		return false
	}
}

func (s *scanner) skipObject(depth int) bool {
	if depth > maxDepth {
		s.deep = true
		return false
	}
	if s.open('}') {
		return true
	}
	for {
		if _, _, ok := s.key(); !ok {
			return false
		}
		if !s.skipValue(depth) {
			return false
		}
		more, ok := s.next('}')
		if !ok || !more {
			return ok
		}
	}
}

func (s *scanner) skipArray(depth int) bool {
	if depth > maxDepth {
		s.deep = true
		return false
	}
	if s.open(']') {
		return true
	}
	for {
		if !s.skipValue(depth) {
			return false
		}
		more, ok := s.next(']')
		if !ok || !more {
			return ok
		}
	}
}

func (s *scanner) literal(lit string) bool {
	end := s.pos + len(lit)
	if end > len(s.data) || string(s.data[s.pos:end]) != lit {
		return false
	}
	s.pos = end
	return true
}

// Masks for examining eight string bytes at once.
const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// specialBytes flags, in the top bit of each byte, the bytes of x (eight
// string bytes, little-endian) that need a closer look: quote, backslash
// or control character. Bits above the first flagged byte may be false
// alarms from borrows, but the lowest flag is always exact, which is all
// skipString uses.
func specialBytes(x uint64) uint64 {
	ctl := (x - lsb*0x20) &^ x
	quote := x ^ (lsb * '"')
	quote = (quote - lsb) &^ quote
	bslash := x ^ (lsb * '\\')
	bslash = (bslash - lsb) &^ bslash
	return (ctl | quote | bslash) & msb
}

// skipString consumes a string whose opening quote is at pos. escaped
// reports whether it holds any escape sequence.
func (s *scanner) skipString() (escaped, ok bool) {
	d := s.data
	i := s.pos + 1
	for {
		i = plainRun(d, i)
		if i >= len(d) {
			return false, false
		}
		switch d[i] {
		case '"':
			s.pos = i + 1
			return escaped, true
		case '\\':
			escaped = true
			if i+1 >= len(d) {
				return false, false
			}
			switch d[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if _, ok := hex4(d[i+2:]); !ok {
					return false, false
				}
				i += 6
			default:
				return false, false
			}
		default: // a control character
			return false, false
		}
	}
}

// plainRun returns the index of the first byte at or after i that needs a
// closer look inside a string, or len(d).
func plainRun(d []byte, i int) int {
	for ; i+8 <= len(d); i += 8 {
		if m := specialBytes(binary.LittleEndian.Uint64(d[i:])); m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
	}
	for i < len(d) && !stringSpecial(d[i]) {
		i++
	}
	return i
}

// stringSpecial reports whether c ends the fast path inside a string.
func stringSpecial(c byte) bool { return c < 0x20 || c == '"' || c == '\\' }

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// number consumes a number. v is its value and isInt is true when it is
// written without fraction or exponent and fits in an int64; "-0" is 0.
func (s *scanner) number() (v int64, isInt, ok bool) {
	d := s.data
	i := s.pos
	neg := false
	if i < len(d) && d[i] == '-' {
		neg = true
		i++
	}
	if i >= len(d) {
		return 0, false, false
	}
	var u uint64
	overflow := false
	switch c := d[i]; {
	case c == '0':
		i++
	case '1' <= c && c <= '9':
		for ; i < len(d) && isDigit(d[i]); i++ {
			if u > (1<<64-1-9)/10 {
				overflow = true
				continue
			}
			u = u*10 + uint64(d[i]-'0')
		}
	default:
		return 0, false, false
	}
	isInt = !overflow
	if i < len(d) && d[i] == '.' {
		i++
		if i >= len(d) || !isDigit(d[i]) {
			return 0, false, false
		}
		for i < len(d) && isDigit(d[i]) {
			i++
		}
		isInt = false
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if i >= len(d) || !isDigit(d[i]) {
			return 0, false, false
		}
		for i < len(d) && isDigit(d[i]) {
			i++
		}
		isInt = false
	}
	s.pos = i
	if !isInt {
		return 0, false, true
	}
	if neg {
		if u > 1<<63 {
			return 0, false, true
		}
		return int64(-u), true, true
	}
	if u > 1<<63-1 {
		return 0, false, true
	}
	return int64(u), true, true
}

// appendUnescaped appends the value of the string content src (already
// validated by skipString) to dst. The result is never longer than src.
// Lone or mismatched surrogate escapes become U+FFFD, as encoding/json
// decodes them.
func appendUnescaped(dst, src []byte) []byte {
	for i := 0; i < len(src); {
		if src[i] != '\\' {
			j := i + 1
			for j < len(src) && src[j] != '\\' {
				j++
			}
			dst = append(dst, src[i:j]...)
			i = j
			continue
		}
		if i+1 >= len(src) {
			return dst
		}
		switch c := src[i+1]; c {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, ok := hex4(src[i+2:])
			if !ok {
				return dst
			}
			i += 6
			if utf16.IsSurrogate(r) {
				if i+1 < len(src) && src[i] == '\\' && src[i+1] == 'u' {
					if r2, ok := hex4(src[i+2:]); ok {
						if pair := utf16.DecodeRune(r, r2); pair != utf8.RuneError {
							dst = utf8.AppendRune(dst, pair)
							i += 6
							continue
						}
					}
				}
				r = utf8.RuneError
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default: // '"', '\\' and '/' stand for themselves
			dst = append(dst, c)
		}
		i += 2
	}
	return dst
}

// nameBufLen bounds the escaped member names and type values resolved
// without allocating. Every name the relay looks for is ASCII and at most
// 18 bytes long, so even fully escaped (6 bytes a character) it fits.
const nameBufLen = 128

// name returns the unescaped value of a member name or short string. When
// the raw text is too long to be any name the relay knows, it returns nil.
func name(buf *[nameBufLen]byte, raw []byte, escaped bool) []byte {
	if !escaped {
		return raw
	}
	if len(raw) > len(buf) {
		return nil
	}
	return appendUnescaped(buf[:0], raw)
}
