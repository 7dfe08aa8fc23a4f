package protocol_test

import (
	"encoding/json"
	"reflect"
	"testing"
	"unicode/utf8"

	"github.com/livestore-relay/livestore-relay/protocol"
)

// decodeJSON parses b with encoding/json, keeping numbers exact.
func decodeJSON(t *testing.T, b []byte) map[string]any {
	t.Helper()
	if !json.Valid(b) {
		t.Fatalf("invalid JSON: %s", b)
	}
	if !utf8.Valid(b) {
		t.Fatalf("invalid UTF-8: %q", b)
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("unmarshal %s: %v", b, err)
	}
	return v
}

func envelope(typ string, now float64) map[string]any {
	return map[string]any{"type": typ, "clientId": "server", "sessionId": "", "timestamp": now}
}

func TestAppendAck(t *testing.T) {
	prefix := []byte("prefix")
	out := protocol.AppendAck(prefix, 1733644800000, 3, 1733641000000)
	if string(out[:len(prefix)]) != "prefix" {
		t.Fatalf("prefix lost: %s", out)
	}
	want := envelope("ack", 1733644800000)
	want["payload"] = map[string]any{"receivedCount": 3.0, "lastTimestamp": 1733641000000.0}
	if got := decodeJSON(t, out[len(prefix):]); !reflect.DeepEqual(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
	const exact = `{"type":"ack","clientId":"server","sessionId":"","timestamp":-1,"payload":{"receivedCount":0,"lastTimestamp":0}}`
	if got := string(protocol.AppendAck(nil, -1, 0, 0)); got != exact {
		t.Errorf("got  %s\nwant %s", got, exact)
	}
}

func TestAppendPullResponse(t *testing.T) {
	for _, peers := range [][]string{nil, {}, {"device-def-789", "device-ghi-012"}, {"a\"b", "\\", "\x00\x1f", "é😀"}} {
		out := protocol.AppendPullResponse(nil, 42, peers)
		want := envelope("pull_response", 42)
		want["payload"] = map[string]any{"events": []any{}, "fromClientId": "server", "hasMore": false}
		list := []any{}
		for _, p := range peers {
			list = append(list, p)
		}
		want["onlinePeers"] = list
		if got := decodeJSON(t, out); !reflect.DeepEqual(got, want) {
			t.Errorf("peers %q:\ngot  %v\nwant %v", peers, got, want)
		}
	}
}

func TestAppendServerPeerPullResponse(t *testing.T) {
	for _, id := range []string{"req-abc-123", "", `"\/<>&` + "\u2028\n\t\x7f"} {
		out := protocol.AppendServerPeerPullResponse(nil, 7, []byte(id))
		want := envelope("peer_pull_response", 7)
		want["payload"] = map[string]any{"requestId": id, "events": []any{}, "hasMore": false}
		if got := decodeJSON(t, out); !reflect.DeepEqual(got, want) {
			t.Errorf("id %q:\ngot  %v\nwant %v", id, got, want)
		}
	}
}

func TestAppendError(t *testing.T) {
	for _, c := range protocol.AllCodes() {
		out := protocol.AppendError(nil, 9, c, `bad "thing" \ here`)
		want := envelope("error", 9)
		want["code"] = c.String()
		want["message"] = `bad "thing" \ here`
		if got := decodeJSON(t, out); !reflect.DeepEqual(got, want) {
			t.Errorf("got %v\nwant %v", got, want)
		}
	}
}

// TestAppendStringRoundTrip runs odd strings through an encoder and back
// through encoding/json.
func TestAppendStringRoundTrip(t *testing.T) {
	odd := []string{
		"", "plain", `"`, `\`, `\"`, "\x00", "\x01\x02\x1f", "\x7f", "\n\r\t\b\f",
		"é", "日本語", "😀", "\u2028\u2029", "\ufeff", "</script>", "a\u0000b",
	}
	for i := range 0x20 {
		odd = append(odd, string(rune(i)))
	}
	for _, s := range odd {
		out := protocol.AppendError(nil, 0, protocol.CodeInternalError, s)
		if got := decodeJSON(t, out)["message"]; got != s {
			t.Errorf("%q came back as %q", s, got)
		}
	}
	// Invalid UTF-8 cannot round-trip; it must still give valid output.
	for _, s := range []string{"\xff", "a\xc3", "\xed\xa0\x80", "ok\xf0\x9f\x98"} {
		out := protocol.AppendError(nil, 0, protocol.CodeInternalError, s)
		msg, _ := decodeJSON(t, out)["message"].(string)
		if want := toValidUTF8(s); msg != want {
			t.Errorf("%q came back as %q, want %q", s, msg, want)
		}
	}
}

func toValidUTF8(s string) string {
	var out []rune
	for _, r := range s {
		out = append(out, r)
	}
	return string(out)
}

// TestEncodeErrorCodeNames checks that AppendError emits exactly the
// contract's code names.
func TestEncodeErrorCodeNames(t *testing.T) {
	out := protocol.AppendError(nil, 0, protocol.CodeRateLimited, "slow down")
	if got := decodeJSON(t, out)["code"]; got != "rate_limited" {
		t.Errorf("code = %v", got)
	}
}

func TestStoreEncoders(t *testing.T) {
	h := protocol.Head{EventNumber: 7, ClientID: "dev\"a", SessionID: "s1"}
	head := map[string]any{"eventNumber": 7.0, "clientId": "dev\"a", "sessionId": "s1"}
	zero := map[string]any{"eventNumber": 0.0}

	want := envelope("ack", 5)
	want["payload"] = map[string]any{"receivedCount": 2.0, "lastTimestamp": 9.0, "storeId": "st", "head": head}
	if got := decodeJSON(t, protocol.AppendStoreAck(nil, 5, 2, 9, "st", h)); !reflect.DeepEqual(got, want) {
		t.Errorf("ack: got %v\nwant %v", got, want)
	}

	want = envelope("pull_response", 5)
	want["payload"] = map[string]any{"events": []any{}, "fromClientId": "server", "hasMore": false,
		"storeId": "st", "head": zero, "storePeers": []any{"b"}}
	want["onlinePeers"] = []any{"b", "c"}
	got := decodeJSON(t, protocol.AppendStorePullResponse(nil, 5, []string{"b", "c"}, "st", protocol.Head{ClientID: "ignored"}, []string{"b"}))
	if !reflect.DeepEqual(got, want) {
		t.Errorf("pull_response: got %v\nwant %v", got, want)
	}
	got = decodeJSON(t, protocol.AppendStorePullResponse(nil, 5, nil, "st", h, nil))
	if p := got["payload"].(map[string]any); !reflect.DeepEqual(p["storePeers"], []any{}) || !reflect.DeepEqual(got["onlinePeers"], []any{}) {
		t.Errorf("empty peer lists: %v", got)
	}

	want = envelope("peer_pull_response", 5)
	want["payload"] = map[string]any{"requestId": "r", "events": []any{}, "hasMore": false, "storeId": "st", "head": head}
	if got := decodeJSON(t, protocol.AppendStorePeerPullResponse(nil, 5, []byte("r"), "st", h)); !reflect.DeepEqual(got, want) {
		t.Errorf("peer_pull_response: got %v\nwant %v", got, want)
	}
}

func TestAppendErrorReply(t *testing.T) {
	h := protocol.Head{EventNumber: 3, ClientID: "a", SessionID: "b"}
	cases := []struct {
		name    string
		to      protocol.ReplyTo
		head    *protocol.Head
		payload any
	}{
		{"unknown type", protocol.ReplyTo{}, nil, nil},
		{"type only", protocol.ReplyTo{Type: protocol.TypePush}, nil,
			map[string]any{"replyTo": map[string]any{"type": "push"}}},
		{"request and store", protocol.ReplyTo{Type: protocol.TypePeerPull, RequestID: "r\n", StoreID: "st"}, nil,
			map[string]any{"replyTo": map[string]any{"type": "peer_pull", "requestId": "r\n", "storeId": "st"}}},
		{"head", protocol.ReplyTo{Type: protocol.TypePush, StoreID: "st"}, &h,
			map[string]any{"storeId": "st", "head": map[string]any{"eventNumber": 3.0, "clientId": "a", "sessionId": "b"},
				"replyTo": map[string]any{"type": "push", "storeId": "st"}}},
	}
	for _, tt := range cases {
		want := envelope("error", 5)
		want["code"], want["message"] = "head_mismatch", "m"
		if tt.payload != nil {
			want["payload"] = tt.payload
		}
		if got := decodeJSON(t, protocol.AppendErrorReply(nil, 5, protocol.CodeHeadMismatch, "m", tt.to, tt.head)); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %v\nwant %v", tt.name, got, want)
		}
	}
}
