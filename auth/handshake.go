package auth

import (
	"bytes"
	"strings"
)

// TokenFromQuery finds the "token" parameter in a raw request URI
// ("/path?a=b&token=..."), decoding it the way net/url decodes a query
// ('+' is a space, %XX a byte). present reports whether the parameter occurs
// at all, even empty, because a present but bad query token must be refused
// rather than fall back to the cookie. The first occurrence wins.
//
// A value whose percent-encoding is broken is returned undecoded: it cannot be
// a valid token, so Verify refuses it, whereas treating it as absent would let
// the request fall through to another token source.
//
// The only allocation is the returned string.
func TokenFromQuery(uri []byte) (token string, present bool) {
	i := bytes.IndexByte(uri, '?')
	if i < 0 {
		return "", false
	}
	query := uri[i+1:]
	if j := bytes.IndexByte(query, '#'); j >= 0 {
		query = query[:j]
	}
	for len(query) > 0 {
		var pair []byte
		pair, query, _ = bytes.Cut(query, []byte{'&'})
		key, value, _ := bytes.Cut(pair, []byte{'='})
		if queryKeyIs(key, "token") {
			return unescapeQuery(value), true
		}
	}
	return "", false
}

// queryKeyIs compares a still-encoded query key with want without
// allocating, so that "tok%65n" is recognised as net/url would.
func queryKeyIs(key []byte, want string) bool {
	n := 0
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch c {
		case '+':
			c = ' '
		case '%':
			if i+2 >= len(key) || !isHex(key[i+1]) || !isHex(key[i+2]) {
				return false
			}
			c = unhex(key[i+1])<<4 | unhex(key[i+2])
			i += 2
		}
		if n >= len(want) || want[n] != c {
			return false
		}
		n++
	}
	return n == len(want)
}

// unescapeQuery decodes a query value with a single allocation for the result.
func unescapeQuery(v []byte) string {
	n, escaped := 0, false
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '%':
			if i+2 >= len(v) || !isHex(v[i+1]) || !isHex(v[i+2]) {
				return string(v)
			}
			i += 2
			escaped = true
		case '+':
			escaped = true
		}
		n++
	}
	if !escaped {
		return string(v)
	}
	var b strings.Builder
	b.Grow(n)
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch c {
		case '%':
			c = unhex(v[i+1])<<4 | unhex(v[i+2])
			i += 2
		case '+':
			c = ' '
		}
		b.WriteByte(c)
	}
	return b.String()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10
	}
	return 0
}

// cookieName is the cookie a browser client can carry its token in, for
// setups where the token must not appear in URLs.
const cookieName = "auth_token"

// TokenFromCookie finds the auth_token cookie in one Cookie header value
// ("a=b; auth_token=xyz"). Surrounding double quotes are stripped; the value is
// not otherwise decoded, as cookie values are opaque. present reports whether
// the cookie occurs, even empty; the first occurrence wins. A request may carry
// several Cookie headers: call this for each.
//
// The only allocation is the returned string.
func TokenFromCookie(header []byte) (token string, present bool) {
	for len(header) > 0 {
		var part []byte
		part, header, _ = bytes.Cut(header, []byte{';'})
		name, value, ok := bytes.Cut(part, []byte{'='})
		// A pair without '=' is, to browsers, a cookie with an empty name,
		// so it can never be auth_token.
		if !ok || string(trimOWS(name)) != cookieName {
			continue
		}
		value = trimOWS(value)
		if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
			value = value[1 : len(value)-1]
		}
		return string(value), true
	}
	return "", false
}

// trimOWS trims the optional whitespace HTTP allows around list elements,
// and stray CR/LF in case the caller hands over a value with its line ending.
func trimOWS(b []byte) []byte {
	for len(b) > 0 && isOWS(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isOWS(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

func isOWS(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }
