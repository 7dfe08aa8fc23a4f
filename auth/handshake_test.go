package auth

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestTokenFromQuery(t *testing.T) {
	cases := []struct {
		uri     string
		token   string
		present bool
	}{
		{"/api/v1/livestore/sync", "", false},
		{"/api/v1/livestore/sync?", "", false},
		{"/sync?token=abc.def.ghi", "abc.def.ghi", true},
		{"/sync?a=1&token=abc&b=2", "abc", true},
		{"/sync?a=1&b=2&token=abc", "abc", true},
		{"/sync?token=first&token=second", "first", true},
		{"/sync?token=", "", true},
		{"/sync?token", "", true},
		{"/sync?a=1&token&b=2", "", true},
		{"/sync?xtoken=abc", "", false},
		{"/sync?tokenx=abc", "", false},
		{"/sync?Token=abc", "", false},
		{"/sync?xtoken=abc&token=def", "def", true},
		{"/sync?a=token=abc", "", false},
		{"/sync?token=a%2Eb%2ec", "a.b.c", true},
		{"/sync?token=a%20b", "a b", true},
		{"/sync?token=a+b", "a b", true},
		{"/sync?token=%41%42%43", "ABC", true},
		{"/sync?token=a%3Db%26c", "a=b&c", true},
		{"/sync?tok%65n=abc", "abc", true},
		{"/sync?tok%6=abc", "", false},
		{"/sync?token=abc%", "abc%", true},
		{"/sync?token=abc%2", "abc%2", true},
		{"/sync?token=abc%zz", "abc%zz", true},
		{"/sync?token=abc#frag", "abc", true},
		{"/sync?a=b#token=abc", "", false},
		{"/sync?token=a=b", "a=b", true},
		{"/sync?&&token=abc&&", "abc", true},
		{"http://relay.example.com/sync?token=abc", "abc", true},
		{"/path/with?two?token=abc", "", false},
		{"/path?x=1?token=abc", "", false},
		{"/sync/token=abc", "", false},
	}
	for _, c := range cases {
		t.Run(c.uri, func(t *testing.T) {
			token, present := TokenFromQuery([]byte(c.uri))
			if token != c.token || present != c.present {
				t.Fatalf("TokenFromQuery(%q) = %q, %v; want %q, %v", c.uri, token, present, c.token, c.present)
			}
		})
	}
	if tok, ok := TokenFromQuery(nil); tok != "" || ok {
		t.Fatal("nil URI")
	}
}

func TestTokenFromCookie(t *testing.T) {
	cases := []struct {
		header  string
		token   string
		present bool
	}{
		{"", "", false},
		{"auth_token=xyz", "xyz", true},
		{"a=b; auth_token=xyz", "xyz", true},
		{"a=b;auth_token=xyz;c=d", "xyz", true},
		{"a=b;  auth_token=xyz  ; c=d", "xyz", true},
		{"auth_token=\"xyz\"", "xyz", true},
		{"auth_token=\"\"", "", true},
		{"auth_token=\"", "\"", true},
		{"auth_token=", "", true},
		{"auth_token=first; auth_token=second", "first", true},
		{"auth_token", "", false},
		{"xauth_token=xyz", "", false},
		{"auth_tokenx=xyz", "", false},
		{"Auth_Token=xyz", "", false},
		{"a=auth_token=xyz", "", false},
		{"auth_token=a.b.c-_", "a.b.c-_", true},
		{"auth_token=a=b", "a=b", true},
		{"\tauth_token=xyz\t", "xyz", true},
		{";;;", "", false},
	}
	for _, c := range cases {
		t.Run(c.header, func(t *testing.T) {
			token, present := TokenFromCookie([]byte(c.header))
			if token != c.token || present != c.present {
				t.Fatalf("TokenFromCookie(%q) = %q, %v; want %q, %v", c.header, token, present, c.token, c.present)
			}
		})
	}
}

// The helpers run for every upgrade, inside a zero-copy parser.
func TestHandshakeHelpersAllocations(t *testing.T) {
	uri := []byte("/api/v1/livestore/sync?clientId=abc&token=eyJhbGciOiJIUzI1NiJ9.e30.c2ln&x=1")
	escaped := []byte("/api/v1/livestore/sync?tok%65n=eyJhbGciOiJIUzI1NiJ9%2Ee30%2Ec2ln")
	absent := []byte("/api/v1/livestore/sync?clientId=abc&xtoken=1")
	cookie := []byte("theme=dark; session=\"abc\"; auth_token=\"eyJhbGciOiJIUzI1NiJ9.e30.c2ln\"")
	check := func(name string, want float64, f func()) {
		t.Helper()
		if got := testing.AllocsPerRun(100, f); got > want {
			t.Errorf("%s: %v allocations, want at most %v", name, got, want)
		}
	}
	check("query", 1, func() { TokenFromQuery(uri) })
	check("escaped query", 1, func() { TokenFromQuery(escaped) })
	check("absent query", 0, func() { TokenFromQuery(absent) })
	check("cookie", 1, func() { TokenFromCookie(cookie) })
	check("absent cookie", 0, func() { TokenFromCookie([]byte("a=b; c=d")) })
	p, err := NewOriginPolicy([]string{"https://app.example.com", "http://localhost:3000"})
	if err != nil {
		t.Fatal(err)
	}
	origin, host := []byte("https://APP.example.com"), []byte("relay.example.com")
	check("origin listed", 0, func() { p.Allow(origin, host) })
	check("origin same host", 0, func() { p.Allow([]byte("https://relay.example.com"), host) })
	check("origin refused", 0, func() { p.Allow([]byte("https://evil.example.com"), host) })
}

// FuzzTokenFromQuery checks that TokenFromQuery never panics and agrees with
// net/url wherever net/url parses the whole query cleanly.
func FuzzTokenFromQuery(f *testing.F) {
	for _, s := range []string{
		"/sync?token=abc", "/sync?a=1&token=a%2Eb", "/?token", "/?token=%", "/?tok%65n=x+y",
		"/?xtoken=1&token=2", "?token=a#b", "", "?", "/?%zz=1&token=2", "/?token=a;b",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, uri []byte) {
		token, present := TokenFromQuery(uri)
		if !present && token != "" {
			t.Fatalf("absent parameter with value %q", token)
		}
		s := string(uri)
		i := strings.IndexByte(s, '?')
		if i < 0 || strings.Contains(s, "#") {
			return
		}
		values, err := url.ParseQuery(s[i+1:])
		if err != nil {
			return
		}
		_, want := values["token"]
		if present != want || token != values.Get("token") {
			t.Fatalf("TokenFromQuery(%q) = %q, %v; net/url says %q, %v", s, token, present, values.Get("token"), want)
		}
	})
}

// FuzzTokenFromCookie checks that TokenFromCookie never panics and finds the
// cookie wherever net/http does.
func FuzzTokenFromCookie(f *testing.F) {
	for _, s := range []string{"auth_token=x", "a=b; auth_token=\"x\"", "auth_token", ";", "auth_token=\"", " auth_token = x "} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, header []byte) {
		token, present := TokenFromCookie(header)
		if !present && token != "" {
			t.Fatalf("absent cookie with value %q", token)
		}
		// net/http departs from browsers on whitespace around '=' and on
		// pairs without '=' (which browsers read as a nameless cookie), so
		// compare only where both readings are unambiguous.
		if strings.ContainsAny(string(header), " \t") {
			return
		}
		req := http.Request{Header: http.Header{"Cookie": {string(header)}}}
		if c, err := req.Cookie(cookieName); err == nil && c.Value != "" {
			if !present || token != c.Value {
				t.Fatalf("TokenFromCookie(%q) = %q, %v; net/http says %q", header, token, present, c.Value)
			}
		}
	})
}
