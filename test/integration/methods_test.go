package integration

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/livestore-relay/livestore-relay/test/relaytest"
	"github.com/livestore-relay/livestore-relay/transport"
)

// The HTTP surface answers only the requests it lists; any other method on
// a listed path is "anything else" and gets 404.
func TestOtherMethodsOnKnownPathsAreNotFound(t *testing.T) {
	s := relaytest.Start(t)
	for _, path := range []string{"/healthz", "/readyz", "/metrics", transport.AsyncAPIPath, transport.SyncPath} {
		for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
			req, err := http.NewRequest(method, s.HTTP+path, strings.NewReader("{}"))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("%s %s: %d, want 404", method, path, resp.StatusCode)
			}
		}
	}
}

func TestPlainGetOnTheSyncPathIsUpgradeRequired(t *testing.T) {
	s := relaytest.Start(t)
	resp, err := http.Get(s.HTTP + transport.SyncPath + "?token=" + relaytest.Token(t, "alice"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var body struct{ Type, Code string }
	if resp.StatusCode != http.StatusUpgradeRequired || json.Unmarshal(b, &body) != nil || body.Type != "error" || body.Code != "upgrade_required" {
		t.Fatalf("plain GET: %d %s, want 426 with an upgrade_required error", resp.StatusCode, b)
	}
}
