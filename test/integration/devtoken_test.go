package integration

import (
	"net/http"
	"strings"
	"testing"

	"github.com/livestore-relay/livestore-relay/test/relaytest"
)

// The web demo signs in through GET /dev/token, which exists only in
// development mode.

func TestDevModeTokenEndpointSignsTokensThatConnect(t *testing.T) {
	s, _ := relaytest.StartBinary(t, relaytest.CleanEnv(), "--dev", "--log-format", "json")
	resp, body := s.Get(t, "/dev/token?user=alice")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /dev/token?user=alice: status %d (body %q), want 200", resp.StatusCode, body)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Fatalf("Cache-Control %q, want no-store", cc)
	}
	alice := strings.TrimSpace(body)
	if sub := jwtClaims(t, alice)["sub"]; sub != "alice" {
		t.Fatalf("token subject %v, want alice", sub)
	}
	// Two devices with the token are alice's: a push goes from one to the other.
	expectRelayed(t, dialToken(t, s, alice, "laptop"), dialToken(t, s, alice, "phone"))

	// Another user's token is another room: bob's device hears nothing of alice's.
	_, body = s.Get(t, "/dev/token?user=bob")
	bob := dialToken(t, s, strings.TrimSpace(body), "tablet")
	bob.Bind()
	laptop := dialToken(t, s, alice, "laptop2")
	laptop.Bind()
	laptop.Push(laptop.Event(map[string]any{"text": "for alice only"}))
	laptop.Expect("ack")
	bob.ExpectQuiet()
}

func TestDevModeTokenEndpointRefusesAMissingOrLongUser(t *testing.T) {
	s, _ := relaytest.StartBinary(t, relaytest.CleanEnv(), "--dev", "--log-format", "json")
	for _, path := range []string{"/dev/token", "/dev/token?user=", "/dev/token?user=" + strings.Repeat("u", 129)} {
		if resp, body := s.Get(t, path); resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("GET %.40s: status %d (body %q), want 400", path, resp.StatusCode, body)
		}
	}
}

func TestTokenEndpointIsNotFoundWithoutDevMode(t *testing.T) {
	s, _ := relaytest.StartBinary(t, relaytest.CleanEnv(secretEnv()))
	for _, path := range []string{"/dev/token?user=alice", "/dev/token"} {
		if resp, body := s.Get(t, path); resp.StatusCode != http.StatusNotFound {
			t.Fatalf("GET %s without --dev: status %d (body %q), want 404", path, resp.StatusCode, body)
		}
	}
	// Nor in-process, where the server is configured without it.
	inProcess := relaytest.Start(t)
	if resp, body := inProcess.Get(t, "/dev/token?user=alice"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /dev/token in process: status %d (body %q), want 404", resp.StatusCode, body)
	}
}
