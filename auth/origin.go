package auth

import (
	"fmt"
	"strings"
)

// OriginPolicy decides whether a browser may open a socket from a given
// Origin, defending against cross-site WebSocket hijacking with the user's
// cookie. The zero value allows requests without an Origin header and
// same-host origins only.
type OriginPolicy struct {
	any     bool
	allowed []allowedOrigin
}

// allowedOrigin is a normalised scheme://host[:port]: scheme and host lower-cased,
// port explicit (the scheme's default when the origin omits it, 0 when the
// scheme has none).
type allowedOrigin struct {
	scheme string
	host   string
	port   int
}

// NewOriginPolicy builds a policy from a list of allowed origins, each
// "scheme://host[:port]" or "*" for any origin. Empty entries are ignored so
// that a trailing comma in a flag is harmless. "null" is refused: it is the
// origin of sandboxed frames and local files, which any site can produce, so
// allowing it by name would defeat the check; "*" states that intent openly.
func NewOriginPolicy(allowed []string) (OriginPolicy, error) {
	var p OriginPolicy
	for _, entry := range allowed {
		e := strings.TrimSpace(entry)
		switch {
		case e == "":
			continue
		case e == "*":
			p.any = true
			continue
		case strings.EqualFold(e, "null"):
			return OriginPolicy{}, fmt.Errorf("auth: allowed origin %q: the opaque origin cannot be listed (use * to allow every origin)", entry)
		}
		// Tolerate the trailing slash people copy from a browser's address
		// bar; a real Origin header never has one.
		e = strings.TrimSuffix(e, "/")
		scheme, host, port, ok := parseOrigin([]byte(e))
		if !ok {
			return OriginPolicy{}, fmt.Errorf("auth: allowed origin %q: want scheme://host[:port]", entry)
		}
		p.allowed = append(p.allowed, allowedOrigin{
			scheme: strings.ToLower(string(scheme)),
			host:   strings.ToLower(string(host)),
			port:   port,
		})
	}
	return p, nil
}

// Allow reports whether a request with the given Origin and Host header
// values may connect. An empty origin means the header is absent: such a
// request does not come from a browser page, so there is no ambient
// credential to abuse. Allow does not allocate.
func (p OriginPolicy) Allow(origin, host []byte) bool {
	if len(origin) == 0 || p.any {
		return true
	}
	scheme, oHost, oPort, ok := parseOrigin(origin)
	if !ok {
		return false
	}
	if sameHost(scheme, oHost, oPort, host) {
		return true
	}
	for _, a := range p.allowed {
		if a.port == oPort && equalFoldASCII(scheme, a.scheme) && equalFoldASCII(oHost, a.host) {
			return true
		}
	}
	return false
}

// sameHost compares an origin with the Host header. The Host header carries
// no scheme, so a port-less Host stands for the default port of the origin's
// scheme: http://example.com matches "example.com" and "example.com:80".
// Only http and https qualify; the opaque origin "null" never parses.
func sameHost(scheme, oHost []byte, oPort int, hostHeader []byte) bool {
	if !equalFoldASCII(scheme, "http") && !equalFoldASCII(scheme, "https") {
		return false
	}
	def := defaultPort(scheme)
	hHost, hPort, ok := parseHostPort(hostHeader)
	if !ok {
		return false
	}
	if hPort == 0 {
		hPort = def
	}
	return hPort == oPort && equalFoldASCII(hHost, oHost)
}

// parseOrigin splits a serialised origin, "scheme://host[:port]" with
// nothing after it, and fills in the scheme's default port.
func parseOrigin(b []byte) (scheme, host []byte, port int, ok bool) {
	i := indexSchemeEnd(b)
	if i <= 0 {
		return nil, nil, 0, false
	}
	scheme = b[:i]
	for j, c := range scheme {
		alpha := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if !alpha && (j == 0 || !('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return nil, nil, 0, false
		}
	}
	host, port, ok = parseHostPort(b[i+3:])
	if !ok {
		return nil, nil, 0, false
	}
	if port == 0 {
		port = defaultPort(scheme)
	}
	return scheme, host, port, true
}

// indexSchemeEnd returns the index of "://" in b, or -1.
func indexSchemeEnd(b []byte) int {
	for i := 0; i+2 < len(b); i++ {
		if b[i] == ':' && b[i+1] == '/' && b[i+2] == '/' {
			return i
		}
	}
	return -1
}

func defaultPort(scheme []byte) int {
	switch {
	case equalFoldASCII(scheme, "http"), equalFoldASCII(scheme, "ws"):
		return 80
	case equalFoldASCII(scheme, "https"), equalFoldASCII(scheme, "wss"):
		return 443
	}
	return 0
}

// parseHostPort splits "host[:port]" where host is a registered name, an
// IPv4 address or a bracketed IPv6 address (kept with its brackets). port is 0
// when absent. Anything else (paths, user info, empty parts) fails, so that
// odd input is refused rather than half-matched.
func parseHostPort(b []byte) (host []byte, port int, ok bool) {
	if len(b) == 0 {
		return nil, 0, false
	}
	var rest []byte
	if b[0] == '[' {
		end := -1
		for i := 1; i < len(b); i++ {
			if b[i] == ']' {
				end = i
				break
			}
			c := b[i]
			if !(isHex(c) || c == ':' || c == '.') {
				return nil, 0, false
			}
		}
		if end < 2 {
			return nil, 0, false
		}
		host, rest = b[:end+1], b[end+1:]
	} else {
		end := len(b)
		for i, c := range b {
			if c == ':' {
				end = i
				break
			}
			if !isHostChar(c) {
				return nil, 0, false
			}
		}
		if end == 0 {
			return nil, 0, false
		}
		host, rest = b[:end], b[end:]
	}
	if len(rest) == 0 {
		return host, 0, true
	}
	if rest[0] != ':' || len(rest) < 2 || len(rest) > 6 {
		return nil, 0, false
	}
	for _, c := range rest[1:] {
		if c < '0' || c > '9' {
			return nil, 0, false
		}
		port = port*10 + int(c-'0')
	}
	if port < 1 || port > 65535 {
		return nil, 0, false
	}
	return host, port, true
}

func isHostChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// equalFoldASCII compares case-insensitively over ASCII only. Unicode case
// folding (as in bytes.EqualFold) would let characters such as the Kelvin
// sign match "k", which has no place in host names.
func equalFoldASCII[A, B ~string | ~[]byte](a A, b B) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
