package protocol_test

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/livestore-relay/livestore-relay/protocol"
)

// trickyFrames are frames near the edges of the grammar and of the rules.
var trickyFrames = []string{
	``, ` `, `{`, `}`, `{}`, `[]`, `null`, `"x"`, `{"type":"push"}`,
	`{"type":"push","clientId":"c","sessionId":"s","timestamp":1,"payload":{"events":[]}}`,
	`{"type":"push","clientId":"c","sessionId":"s","timestamp":1,"payload":{"events":[]}} `,
	`{"type":"push","clientId":"c","sessionId":"s","timestamp":1,"payload":{"events":[]}}x`,
	`{"type":"push","clientId":"c","sessionId":"s","timestamp":1,"payload":{"events":[{"eventName":"e","eventNumber":0,"clientId":"","sessionId":"","timestamp":-1,"data":{"a":[1,2.5e-3,"\ud83d\ude00"]}}]}}`,
	`{"type":"pull","clientId":"\u0061bc","sessionId":"s","timestamp":-0,"payload":{"sinceTimestamp":0}}`,
	`{"type":"pull","clientId":"a\ud800b","sessionId":"s","timestamp":1,"payload":{}}`,
	`{"type":"pull","clientId":"a\ud800\u0041","sessionId":"s","timestamp":1,"payload":{}}`,
	`{"type":"pull","clientId":"a\udc00\ud800","sessionId":"s","timestamp":1,"payload":{}}`,
	`{"type":"pull","clientId":"server","sessionId":"s","timestamp":1,"payload":{}}`,
	`{"type":"pull","clientId":"c","sessionId":"s","timestamp":1e2,"payload":{}}`,
	`{"type":"pull","clientId":"c","sessionId":"s","timestamp":9223372036854775808,"payload":{}}`,
	`{"type":"pull","type":"pull","clientId":"c","sessionId":"s","timestamp":1,"payload":{}}`,
	`{"\u0074ype":"pull","clientId":"c","sessionId":"s","timestamp":1,"payload":{}}`,
	`{"type":"peer_pull","clientId":"c","sessionId":"s","timestamp":1,"payload":{"requestId":"r","sinceTimestamp":0,"targetClientId":"t","retentionDays":3}}`,
	`{"type":"peer_pull_response","clientId":"c","sessionId":"s","timestamp":1,"payload":{"requestId":"r","events":[],"hasMore":true}}`,
	`{"type":"peer_pull_response","clientId":"c","sessionId":"s","timestamp":1,"payload":{"requestId":"r","events":[],"hasMore":tru}}`,
	`{"type":"nope","clientId":"c","sessionId":"s","timestamp":1,"payload":{}}`,
	"{\"type\":\"pull\",\"clientId\":\"c\xff\",\"sessionId\":\"s\",\"timestamp\":1,\"payload\":{}}",
	"{\"type\":\"pull\",\"clientId\":\"c\x01\",\"sessionId\":\"s\",\"timestamp\":1,\"payload\":{}}",
	`{"type":"pull","clientId":"c","sessionId":"s","timestamp":1,"payload":{"a":"\u00"}}`,
	`{"type":"pull","clientId":"c","sessionId":"s","timestamp":1,"payload":{"a":01}}`,
	`{"type":"pull","clientId":"c","sessionId":"s","timestamp":1,"payload":{"a":[` + strings.Repeat("[", 130) + `]}}`,
	strings.Repeat(`{"a":`, 140),
}

// FuzzDecode checks Decode against encoding/json: it never panics, it
// rejects everything encoding/json finds invalid as invalid_message, and
// what it accepts, encoding/json reads the same way.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{seedPush, seedPull, seedPeerPull, seedPeerPullResponse} {
		f.Add([]byte(s))
	}
	for _, s := range trickyFrames {
		f.Add([]byte(s))
	}
	for _, c := range ruleCases() {
		f.Add([]byte(c.frame))
	}
	dec := protocol.NewDecoder(protocol.Limits{MaxEventsPerPush: 3})
	f.Fuzz(func(t *testing.T, in []byte) {
		orig := bytes.Clone(in)
		var m protocol.Message
		err := dec.Decode(in, &m)
		if !bytes.Equal(in, orig) {
			t.Fatal("Decode modified its input")
		}
		if err != nil {
			perr, ok := err.(*protocol.Error)
			if !ok {
				t.Fatalf("error %v is %T", err, err)
			}
			if !json.Valid(in) && perr.Code != protocol.CodeInvalidMessage {
				t.Fatalf("invalid JSON got %v", perr)
			}
			return
		}
		if !json.Valid(in) {
			t.Fatal("accepted invalid JSON")
		}
		checkAgainstStdlib(t, in, &m)
	})
}

// checkAgainstStdlib compares an accepted frame's decoded fields with what
// encoding/json reads from it.
func checkAgainstStdlib(t *testing.T, in []byte, m *protocol.Message) {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(in))
	d.UseNumber()
	var v map[string]any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("encoding/json: %v", err)
	}
	str := func(x any) string {
		s, ok := x.(string)
		if !ok {
			t.Fatalf("%v is %T, not a string", x, x)
		}
		return s
	}
	integer := func(x any) int64 {
		n, ok := x.(json.Number)
		if !ok {
			t.Fatalf("%v is %T, not a number", x, x)
		}
		i, err := strconv.ParseInt(string(n), 10, 64)
		if err != nil {
			t.Fatalf("%v: %v", n, err)
		}
		return i
	}
	if got := str(v["type"]); got != m.Type.String() {
		t.Errorf("type: stdlib %q, Decode %v", got, m.Type)
	}
	if got := str(v["clientId"]); got != string(m.ClientID) {
		t.Errorf("clientId: stdlib %q, Decode %q", got, m.ClientID)
	}
	if got := str(v["sessionId"]); got != string(m.SessionID) {
		t.Errorf("sessionId: stdlib %q, Decode %q", got, m.SessionID)
	}
	if got := integer(v["timestamp"]); got != m.Timestamp {
		t.Errorf("timestamp: stdlib %d, Decode %d", got, m.Timestamp)
	}
	p, ok := v["payload"].(map[string]any)
	if !ok {
		t.Fatalf("payload is %T", v["payload"])
	}
	switch m.Type {
	case protocol.TypePush, protocol.TypePeerPullResponse:
		evs, ok := p["events"].([]any)
		if !ok {
			t.Fatalf("events is %T", p["events"])
		}
		if len(evs) != m.EventCount {
			t.Errorf("events: stdlib %d, Decode %d", len(evs), m.EventCount)
		}
		var last int64
		if len(evs) > 0 {
			last = integer(evs[len(evs)-1].(map[string]any)["timestamp"])
		}
		if last != m.LastEventTimestamp {
			t.Errorf("last timestamp: stdlib %d, Decode %d", last, m.LastEventTimestamp)
		}
	}
	switch m.Type {
	case protocol.TypePeerPull, protocol.TypePeerPullResponse:
		if got := str(p["requestId"]); got != string(m.RequestID) {
			t.Errorf("requestId: stdlib %q, Decode %q", got, m.RequestID)
		}
	}
	switch m.Type {
	case protocol.TypePull, protocol.TypePeerPull:
		since, has := p["sinceTimestamp"]
		if has != m.HasSinceTimestamp || has && integer(since) != m.SinceTimestamp {
			t.Errorf("sinceTimestamp: stdlib %v, Decode %d %v", since, m.SinceTimestamp, m.HasSinceTimestamp)
		}
	}
	if m.Type == protocol.TypePeerPull {
		target, has := p["targetClientId"]
		if has != (m.TargetClientID != nil) || has && str(target) != string(m.TargetClientID) {
			t.Errorf("targetClientId: stdlib %v, Decode %q", target, m.TargetClientID)
		}
	}
	if sid, has := p["storeId"]; has != (m.StoreID != nil) || has && str(sid) != string(m.StoreID) {
		t.Errorf("storeId: stdlib %v, Decode %q", sid, m.StoreID)
	}
	if m.StoreID != nil && m.Type == protocol.TypePull {
		h := p["head"].(map[string]any)
		if n := integer(h["eventNumber"]); n != m.Head.EventNumber {
			t.Errorf("head: stdlib %d, Decode %d", n, m.Head.EventNumber)
		}
		if m.Head.EventNumber > 0 && (str(h["clientId"]) != string(m.Head.ClientID) || str(h["sessionId"]) != string(m.Head.SessionID)) {
			t.Errorf("head ids: stdlib %v, Decode %q %q", h, m.Head.ClientID, m.Head.SessionID)
		}
	}
	if m.StoreID != nil && m.Type == protocol.TypePush && m.EventCount > 0 {
		evs := p["events"].([]any)
		first, last := evs[0].(map[string]any), evs[len(evs)-1].(map[string]any)
		if n := integer(first["parentEventNumber"]); n != m.FirstParent {
			t.Errorf("first parent: stdlib %d, Decode %d", n, m.FirstParent)
		}
		for i, e := range evs {
			ev := e.(map[string]any)
			parent, number := integer(ev["parentEventNumber"]), integer(ev["eventNumber"])
			if number != parent+1 || i > 0 && parent != integer(evs[i-1].(map[string]any)["eventNumber"]) {
				t.Errorf("accepted a broken chain at event %d", i)
			}
		}
		if integer(last["eventNumber"]) != m.LastEvent.EventNumber || str(last["clientId"]) != string(m.LastEvent.ClientID) || str(last["sessionId"]) != string(m.LastEvent.SessionID) {
			t.Errorf("last event: stdlib %v, Decode %+v", last, m.LastEvent)
		}
	}
	if m.Type == protocol.TypePeerPullResponse && p["hasMore"] != m.HasMore {
		t.Errorf("hasMore: stdlib %v, Decode %v", p["hasMore"], m.HasMore)
	}
}

// FuzzValue places arbitrary text where a message allows any value, which
// exercises the scanner's grammar against encoding/json.Valid.
func FuzzValue(f *testing.F) {
	for _, s := range []string{
		`null`, `true`, `false`, `0`, `-0`, `-0.0e+0`, `1E400`, `"\u00e9\ud800"`, `"\"\\\/\b\f\n\r\t"`,
		`[]`, `{}`, `[1,[2,{"a":[3]}]]`, `{"a":{"b":null},"c":""}`, ` [ 1 , 2 ] `,
		`01`, `1.`, `.5`, `-`, `+1`, `[1,]`, `{"a"}`, `{"a":1,}`, `"\x"`, `"` + "\x1f" + `"`, "\"\xff\"",
		strings.Repeat("[", 124) + strings.Repeat("]", 124),
		strings.Repeat("[", 125) + strings.Repeat("]", 125),
	} {
		f.Add(s)
	}
	dec := protocol.NewDecoder(protocol.Limits{})
	f.Fuzz(func(t *testing.T, value string) {
		in := []byte(`{"type":"push","clientId":"c","sessionId":"s","timestamp":1,"payload":{"events":[{"eventName":"e","eventNumber":0,"clientId":"c","sessionId":"s","timestamp":1,"data":` + value + `}]}}`)
		var m protocol.Message
		err := dec.Decode(in, &m)
		if err == nil && !json.Valid(in) {
			t.Fatalf("accepted invalid JSON")
		}
		if err != nil && json.Valid(in) && json.Valid([]byte(value)) && depth(value) <= 128-4 {
			t.Fatalf("rejected valid data: %v", err)
		}
	})
}

// depth returns the deepest bracket nesting of a valid JSON text.
func depth(s string) int {
	d, deepest, inString := 0, 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case inString:
		case c == '[' || c == '{':
			d++
			deepest = max(deepest, d)
		case c == ']' || c == '}':
			d--
		}
	}
	return deepest
}
