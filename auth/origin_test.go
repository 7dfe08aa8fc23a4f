package auth

import (
	"net/url"
	"strings"
	"testing"
)

func TestOriginSameHost(t *testing.T) {
	var p OriginPolicy // zero value: same host only
	cases := []struct {
		origin, host string
		want         bool
	}{
		{"", "example.com", true},
		{"", "", true},
		{"http://example.com", "example.com", true},
		{"http://example.com", "example.com:80", true},
		{"http://example.com", "example.com:443", false},
		{"http://example.com", "example.com:8080", false},
		{"http://example.com:80", "example.com", true},
		{"http://example.com:80", "example.com:80", true},
		{"https://example.com", "example.com", true},
		{"https://example.com", "example.com:443", true},
		{"https://example.com", "example.com:80", false},
		{"https://example.com:443", "example.com", true},
		{"http://example.com:443", "example.com", false},
		{"https://example.com:80", "example.com", false},
		{"http://example.com:8080", "example.com:8080", true},
		{"http://example.com:8080", "example.com", false},
		{"http://example.com:8080", "example.com:80", false},
		{"http://example.com:8080", "example.com:8081", false},
		{"https://example.com:8443", "example.com:8443", true},
		{"http://127.0.0.1:8080", "127.0.0.1:8080", true},
		{"http://127.0.0.1:8080", "127.0.0.1", false},
		{"http://127.0.0.1", "127.0.0.1", true},
		{"http://localhost:8080", "127.0.0.1:8080", false},
		{"http://[::1]:8080", "[::1]:8080", true},
		{"http://[::1]", "[::1]", true},
		{"http://[::1]", "[::1]:80", true},
		{"http://[::1]:8080", "[::1]", false},
		{"HTTP://EXAMPLE.COM", "example.com", true},
		{"http://Example.Com:8080", "EXAMPLE.com:8080", true},
		{"HTTPS://example.com", "Example.COM:443", true},
		{"http://example.com", "EXAMPLE.COM", true},
		{"http://example.com.evil.net", "example.com", false},
		{"http://evil.net", "example.com", false},
		{"http://sub.example.com", "example.com", false},
		{"http://example.com", "sub.example.com", false},
		{"null", "example.com", false},
		{"null", "null", false},
		{"file://example.com", "example.com", false},
		{"ws://example.com", "example.com", false},
		{"chrome-extension://example.com", "example.com", false},
		{"http://example.com/", "example.com", false},
		{"http://example.com/path", "example.com", false},
		{"http://user@example.com", "example.com", false},
		{"http://example.com:", "example.com", false},
		{"http://example.com:0", "example.com:0", false},
		{"http://example.com:65536", "example.com:65536", false},
		{"http://example.com:8o80", "example.com:8o80", false},
		{"http://", "", false},
		{"example.com", "example.com", false},
		{"//example.com", "example.com", false},
		{"http:example.com", "example.com", false},
		{"http://exa mple.com", "exa mple.com", false},
		{"http://example.com", "", false},
		{"http://example.com", "example.com:", false},
		{"http://example.com", "example.com:abc", false},
		{"http://example.com?x", "example.com", false},
		{"http://exampl\u212a.com", "example.com", false},
		{"http://[::1", "[::1", false},
	}
	for _, c := range cases {
		t.Run(c.origin+"|"+c.host, func(t *testing.T) {
			if got := p.Allow([]byte(c.origin), []byte(c.host)); got != c.want {
				t.Fatalf("Allow(%q, %q) = %v, want %v", c.origin, c.host, got, c.want)
			}
		})
	}
	if !p.Allow(nil, nil) {
		t.Fatal("nil origin must pass")
	}
}

func TestOriginList(t *testing.T) {
	p, err := NewOriginPolicy([]string{
		"https://App.Example.com",
		" http://localhost:3000 ",
		"http://intranet:80",
		"https://admin.example.com:443/",
		"",
		"chrome-extension://abcdefghijklmnop",
	})
	if err != nil {
		t.Fatal(err)
	}
	const host = "relay.example.com"
	cases := []struct {
		origin string
		want   bool
	}{
		{"https://app.example.com", true},
		{"https://APP.EXAMPLE.COM", true},
		{"https://app.example.com:443", true},
		{"https://app.example.com:8443", false},
		{"http://app.example.com", false},
		{"http://localhost:3000", true},
		{"http://LOCALHOST:3000", true},
		{"http://localhost", false},
		{"http://localhost:3001", false},
		{"https://localhost:3000", false},
		{"http://intranet", true},
		{"http://intranet:80", true},
		{"https://admin.example.com", true},
		{"chrome-extension://abcdefghijklmnop", true},
		{"chrome-extension://other", false},
		{"https://evil.example.com", false},
		{"https://app.example.com.evil.net", false},
		{"null", false},
		{"https://relay.example.com", true}, // same host still applies
		{"", true},
	}
	for _, c := range cases {
		t.Run(c.origin, func(t *testing.T) {
			if got := p.Allow([]byte(c.origin), []byte(host)); got != c.want {
				t.Fatalf("Allow(%q) = %v, want %v", c.origin, got, c.want)
			}
		})
	}
}

func TestOriginAny(t *testing.T) {
	p, err := NewOriginPolicy([]string{"https://app.example.com", "*"})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []string{"https://evil.example.com", "null", "not an origin", "http://x:1"} {
		if !p.Allow([]byte(o), []byte("relay.example.com")) {
			t.Errorf("* refused %q", o)
		}
	}
}

func TestNewOriginPolicyErrors(t *testing.T) {
	for _, entry := range []string{
		"example.com",
		"://example.com",
		"http://",
		"http://example.com/app",
		"http://example.com?x=1",
		"http://user@example.com",
		"http://example.com:99999",
		"http://example.com:",
		"null",
		"NULL",
		"**",
		"http://*.example.com",
		"1http://example.com",
	} {
		if _, err := NewOriginPolicy([]string{"https://ok.example.com", entry}); err == nil {
			t.Errorf("NewOriginPolicy accepted %q", entry)
		} else if !strings.Contains(err.Error(), entry) {
			t.Errorf("error for %q does not name it: %v", entry, err)
		}
	}
	p, err := NewOriginPolicy(nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.Allow([]byte("https://other.example.com"), []byte("relay.example.com")) {
		t.Fatal("empty list allowed a foreign origin")
	}
}

// FuzzOriginAllow checks that Allow never panics, that an absent Origin
// always passes, and that a same-host decision matches net/url's reading of
// the origin.
func FuzzOriginAllow(f *testing.F) {
	for _, s := range [][2]string{
		{"http://example.com", "example.com"},
		{"https://example.com:443", "example.com"},
		{"http://[::1]:8080", "[::1]:8080"},
		{"null", "null"},
		{"http://a:", "a:"},
		{"HTTP://A", "a:80"},
	} {
		f.Add([]byte(s[0]), []byte(s[1]))
	}
	p, err := NewOriginPolicy([]string{"https://app.example.com", "http://localhost:3000"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, origin, host []byte) {
		allowed := p.Allow(origin, host)
		if len(origin) == 0 && !allowed {
			t.Fatal("absent origin refused")
		}
		if !allowed || len(origin) == 0 {
			return
		}
		if p.Allow(origin, []byte("unrelated.invalid")) {
			return // allowed by the list, not by Host
		}
		u, err := url.Parse(string(origin))
		if err != nil {
			t.Fatalf("allowed %q, which net/url cannot parse: %v", origin, err)
		}
		if s := strings.ToLower(u.Scheme); s != "http" && s != "https" || u.Path != "" || u.User != nil || u.RawQuery != "" {
			t.Fatalf("allowed %q for host %q: not a plain http(s) origin", origin, host)
		}
		if !strings.EqualFold(u.Hostname(), hostnameOf(string(host))) {
			t.Fatalf("allowed %q for host %q: host names differ", origin, host)
		}
	})
}

// hostnameOf strips the port and IPv6 brackets from a Host header value.
func hostnameOf(h string) string {
	return (&url.URL{Host: h}).Hostname()
}
