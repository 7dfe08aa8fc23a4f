package protocol_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"github.com/livestore-relay/livestore-relay/protocol"
)

// The seed document's client examples.
const (
	seedPush = `{
  "type": "push",
  "clientId": "device-abc-123",
  "sessionId": "session-xyz-456",
  "timestamp": 1733644800000,
  "payload": {
    "events": [
      {
        "eventName": "message.created",
        "eventNumber": 42,
        "clientId": "device-abc-123",
        "sessionId": "session-xyz-456",
        "data": {
          "conversationId": "conv-123",
          "text": "Hello world!"
        },
        "timestamp": 1733644800000
      }
    ]
  }
}`
	seedPull = `{
  "type": "pull",
  "clientId": "device-abc-123",
  "sessionId": "session-xyz-456",
  "timestamp": 1733644800000,
  "payload": {
    "sinceTimestamp": 1733640000000
  }
}`
	seedPeerPull = `{
  "type": "peer_pull",
  "clientId": "device-new-123",
  "sessionId": "session-xyz-456",
  "timestamp": 1733644800000,
  "payload": {
    "requestId": "req-abc-123",
    "sinceTimestamp": 1733640000000,
    "retentionDays": 30
  }
}`
	seedPeerPullResponse = `{
  "type": "peer_pull_response",
  "clientId": "device-def-789",
  "sessionId": "session-abc-123",
  "timestamp": 1733644800000,
  "payload": {
    "requestId": "req-abc-123",
    "events": [
      {
        "eventName": "message.created",
        "eventNumber": 40,
        "clientId": "device-def-789",
        "sessionId": "session-old-456",
        "data": {
          "conversationId": "conv-123",
          "text": "Earlier message"
        },
        "timestamp": 1733641000000
      }
    ],
    "hasMore": false
  }
}`
)

func TestDecodeSeedExamples(t *testing.T) {
	tests := []struct {
		name  string
		frame string
		want  protocol.Message
	}{
		{"push", seedPush, protocol.Message{
			Type:               protocol.TypePush,
			ClientID:           []byte("device-abc-123"),
			SessionID:          []byte("session-xyz-456"),
			Timestamp:          1733644800000,
			EventCount:         1,
			LastEventTimestamp: 1733644800000,
		}},
		{"pull", seedPull, protocol.Message{
			Type:              protocol.TypePull,
			ClientID:          []byte("device-abc-123"),
			SessionID:         []byte("session-xyz-456"),
			Timestamp:         1733644800000,
			SinceTimestamp:    1733640000000,
			HasSinceTimestamp: true,
		}},
		{"peer_pull", seedPeerPull, protocol.Message{
			Type:              protocol.TypePeerPull,
			ClientID:          []byte("device-new-123"),
			SessionID:         []byte("session-xyz-456"),
			Timestamp:         1733644800000,
			SinceTimestamp:    1733640000000,
			HasSinceTimestamp: true,
			RequestID:         []byte("req-abc-123"),
			RetentionDays:     30,
			HasRetentionDays:  true,
		}},
		{"peer_pull_response", seedPeerPullResponse, protocol.Message{
			Type:               protocol.TypePeerPullResponse,
			ClientID:           []byte("device-def-789"),
			SessionID:          []byte("session-abc-123"),
			Timestamp:          1733644800000,
			EventCount:         1,
			LastEventTimestamp: 1733641000000,
			RequestID:          []byte("req-abc-123"),
		}},
	}
	dec := protocol.NewDecoder(protocol.Limits{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m protocol.Message
			if err := dec.Decode([]byte(tt.frame), &m); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !reflect.DeepEqual(m, tt.want) {
				t.Errorf("got  %+v\nwant %+v", m, tt.want)
			}
		})
	}
}

// obj builds a JSON object from already encoded members.
func obj(members ...string) string { return "{" + strings.Join(members, ",") + "}" }

// frame builds a message with a valid envelope around payload; extra
// members are appended after the envelope's.
func frame(typ, payload string, extra ...string) string {
	return obj(append([]string{`"type":"` + typ + `"`, `"clientId":"c1"`, `"sessionId":"s1"`, `"timestamp":5`, `"payload":` + payload}, extra...)...)
}

// event builds an event from the valid defaults, with members replaced or
// removed: an entry replaces the member of the same name (or is added), a
// "-name" entry drops that member, and a "+" entry is appended as is, which
// makes a duplicate when the name is already there.
func event(changes ...string) string {
	members := []string{`"eventName":"e"`, `"eventNumber":1`, `"clientId":"c"`, `"sessionId":"s"`, `"timestamp":7`, `"data":null`}
	for _, c := range changes {
		if member, ok := strings.CutPrefix(c, "+"); ok {
			members = append(members, member)
			continue
		}
		if key, ok := strings.CutPrefix(c, "-"); ok {
			for i, m := range members {
				if strings.HasPrefix(m, `"`+key+`":`) {
					members = append(members[:i], members[i+1:]...)
					break
				}
			}
			continue
		}
		key := c[:strings.Index(c[1:], `"`)+2]
		replaced := false
		for i, m := range members {
			if strings.HasPrefix(m, key+":") {
				members[i], replaced = c, true
				break
			}
		}
		if !replaced {
			members = append(members, c)
		}
	}
	return obj(members...)
}

func events(evs ...string) string { return obj(`"events":[` + strings.Join(evs, ",") + `]`) }

func ppr(evs ...string) string {
	return obj(`"requestId":"r1"`, `"events":[`+strings.Join(evs, ",")+`]`, `"hasMore":true`)
}

func pp(members ...string) string {
	return obj(append([]string{`"requestId":"r1"`, `"sinceTimestamp":0`}, members...)...)
}

const (
	ok          = protocol.Code(0)
	invalid     = protocol.CodeInvalidMessage
	unsupported = protocol.CodeUnsupportedType
	limit       = protocol.CodeLimitExceeded
)

// ruleCase is one frame and the outcome the rules give it.
type ruleCase struct {
	name  string
	frame string
	code  protocol.Code
	check func(t *testing.T, m *protocol.Message)
}

func ruleCases() []ruleCase {
	id128 := strings.Repeat("a", 128)
	id129 := strings.Repeat("a", 129)
	// 128 bytes once unescaped, though far longer as written.
	esc128 := strings.Repeat(`\u0061`, 128)
	esc129 := strings.Repeat(`\u0061`, 129)

	return []ruleCase{
		// JSON validity and the top level.
		{"empty", ``, invalid, nil},
		{"whitespace only", " \n", invalid, nil},
		{"array", `[]`, invalid, nil},
		{"string", `"push"`, invalid, nil},
		{"null", `null`, invalid, nil},
		{"empty object", `{}`, invalid, nil},
		{"truncated", frame("pull", `{}`)[:30], invalid, nil},
		{"trailing garbage", frame("pull", `{}`) + "x", invalid, nil},
		{"two objects", frame("pull", `{}`) + frame("pull", `{}`), invalid, nil},
		{"surrounding whitespace", " \t\r\n" + frame("pull", `{}`) + " \t\r\n", ok, nil},
		{"trailing comma", frame("pull", `{"a":1,}`), invalid, nil},
		{"single quotes", `{'type':'pull'}`, invalid, nil},
		{"control char in string", frame("pull", `{"a":"x`+"\x01"+`"}`), invalid, nil},
		{"tab in string", frame("pull", `{"a":"x`+"\t"+`"}`), invalid, nil},
		{"bad escape", frame("pull", `{"a":"\x"}`), invalid, nil},
		{"short unicode escape", frame("pull", `{"a":"\u12"}`), invalid, nil},
		{"bad hex escape", frame("pull", `{"a":"\u12g4"}`), invalid, nil},
		{"leading zero", frame("pull", `{"a":01}`), invalid, nil},
		{"bare minus", frame("pull", `{"a":-}`), invalid, nil},
		{"bare fraction", frame("pull", `{"a":1.}`), invalid, nil},
		{"bare exponent", frame("pull", `{"a":1e}`), invalid, nil},
		{"plus sign", frame("pull", `{"a":+1}`), invalid, nil},
		{"NaN", frame("pull", `{"a":NaN}`), invalid, nil},
		{"bad literal", frame("pull", `{"a":tru}`), invalid, nil},
		{"valid numbers", frame("pull", `{"a":[0,-0,1.5,-2e10,3E+2,4e-2,0.0e0]}`), ok, nil},
		{"valid escapes", frame("pull", `{"a":"\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"}`), ok, nil},
		{"lone surrogate escape is valid JSON", frame("pull", `{"a":"\ud800"}`), ok, nil},
		{"missing colon", `{"type" "pull"}`, invalid, nil},
		{"missing comma", frame("pull", `{"a":1 "b":2}`), invalid, nil},
		{"non-string key", frame("pull", `{1:2}`), invalid, nil},
		{"depth 128 accepted", frame("pull", `{"a":`+strings.Repeat("[", 126)+strings.Repeat("]", 126)+`}`), ok, nil},
		{"depth 129 rejected", frame("pull", `{"a":`+strings.Repeat("[", 127)+strings.Repeat("]", 127)+`}`), invalid, nil},
		{"very deep rejected", strings.Repeat("[", 100000), invalid, nil},
		{"deep object rejected", frame("pull", strings.Repeat(`{"a":`, 200)+"1"+strings.Repeat("}", 200)), invalid, nil},

		// type.
		{"type missing", `{"clientId":"c1","sessionId":"s1","timestamp":5,"payload":{}}`, invalid, nil},
		{"type number", `{"type":1,"clientId":"c1","sessionId":"s1","timestamp":5,"payload":{}}`, invalid, nil},
		{"type null", `{"type":null,"clientId":"c1","sessionId":"s1","timestamp":5,"payload":{}}`, invalid, nil},
		{"type duplicate", frame("pull", `{}`, `"type":"pull"`), invalid, nil},
		{"type duplicate via escape", frame("pull", `{}`, `"\u0074ype":"pull"`), invalid, nil},
		{"type unknown", frame("ack", `{}`), unsupported, nil},
		{"type empty", frame("", `{}`), unsupported, nil},
		{"type case differs", frame("Push", `{}`), unsupported, nil},
		{"type unknown beats bad envelope", `{"type":"nope","clientId":5}`, unsupported, nil},
		{"type unknown but invalid JSON", `{"type":"nope","clientId":}`, invalid, nil},
		{"type missing and bad envelope", `{"clientId":5}`, invalid, nil},
		{"type escaped", `{"type":"p\u0075ll","clientId":"c1","sessionId":"s1","timestamp":5,"payload":{}}`, ok,
			func(t *testing.T, m *protocol.Message) { wantType(t, m, protocol.TypePull) }},
		{"type last", `{"clientId":"c1","sessionId":"s1","timestamp":5,"payload":{"events":[]},"type":"push"}`, ok,
			func(t *testing.T, m *protocol.Message) { wantType(t, m, protocol.TypePush) }},
		{"escaped key", `{"\u0074ype":"pull","clientId":"c1","sessionId":"s1","timestamp":5,"payload":{}}`, ok, nil},
		{"key differing in case is unknown", `{"Type":"pull","clientId":"c1","sessionId":"s1","timestamp":5,"payload":{}}`, invalid, nil},

		// clientId.
		{"clientId missing", `{"type":"pull","sessionId":"s1","timestamp":5,"payload":{}}`, invalid, nil},
		{"clientId number", `{"type":"pull","clientId":1,"sessionId":"s1","timestamp":5,"payload":{}}`, invalid, nil},
		{"clientId empty", `{"type":"pull","clientId":"","sessionId":"s1","timestamp":5,"payload":{}}`, invalid, nil},
		{"clientId 128", `{"type":"pull","clientId":"` + id128 + `","sessionId":"s1","timestamp":5,"payload":{}}`, ok,
			func(t *testing.T, m *protocol.Message) { wantBytes(t, "ClientID", m.ClientID, id128) }},
		{"clientId 129", `{"type":"pull","clientId":"` + id129 + `","sessionId":"s1","timestamp":5,"payload":{}}`, invalid, nil},
		{"clientId 128 escaped", `{"type":"pull","clientId":"` + esc128 + `","sessionId":"s1","timestamp":5,"payload":{}}`, ok,
			func(t *testing.T, m *protocol.Message) { wantBytes(t, "ClientID", m.ClientID, id128) }},
		{"clientId 129 escaped", `{"type":"pull","clientId":"` + esc129 + `","sessionId":"s1","timestamp":5,"payload":{}}`, invalid, nil},
		{"clientId very long escaped", `{"type":"pull","clientId":"` + strings.Repeat(`\u0061`, 5000) + `","sessionId":"s1","timestamp":5,"payload":{}}`, invalid, nil},
		{"clientId server", `{"type":"pull","clientId":"server","sessionId":"s1","timestamp":5,"payload":{}}`, invalid, nil},
		{"clientId server escaped", `{"type":"pull","clientId":"\u0073erver","sessionId":"s1","timestamp":5,"payload":{}}`, invalid, nil},
		{"clientId Server", `{"type":"pull","clientId":"Server","sessionId":"s1","timestamp":5,"payload":{}}`, ok, nil},
		{"clientId escape", `{"type":"pull","clientId":"\u0061bc","sessionId":"s1","timestamp":5,"payload":{}}`, ok,
			func(t *testing.T, m *protocol.Message) { wantBytes(t, "ClientID", m.ClientID, "abc") }},
		{"clientId all escapes", `{"type":"pull","clientId":"a\"b\\c\/d\n\u00e9\ud83d\ude00\ud800x","sessionId":"s1","timestamp":5,"payload":{}}`, ok,
			func(t *testing.T, m *protocol.Message) {
				wantBytes(t, "ClientID", m.ClientID, "a\"b\\c/d\né\U0001F600\uFFFDx")
			}},
		{"clientId non-ASCII", `{"type":"pull","clientId":"é😀","sessionId":"s1","timestamp":5,"payload":{}}`, ok,
			func(t *testing.T, m *protocol.Message) { wantBytes(t, "ClientID", m.ClientID, "é😀") }},
		{"clientId invalid UTF-8", "{\"type\":\"pull\",\"clientId\":\"a\xff\",\"sessionId\":\"s1\",\"timestamp\":5,\"payload\":{}}", invalid, nil},
		{"clientId duplicate", frame("pull", `{}`, `"clientId":"c1"`), invalid, nil},

		// sessionId.
		{"sessionId missing", `{"type":"pull","clientId":"c1","timestamp":5,"payload":{}}`, invalid, nil},
		{"sessionId null", `{"type":"pull","clientId":"c1","sessionId":null,"timestamp":5,"payload":{}}`, invalid, nil},
		{"sessionId empty", `{"type":"pull","clientId":"c1","sessionId":"","timestamp":5,"payload":{}}`, invalid, nil},
		{"sessionId 128", `{"type":"pull","clientId":"c1","sessionId":"` + id128 + `","timestamp":5,"payload":{}}`, ok, nil},
		{"sessionId 129", `{"type":"pull","clientId":"c1","sessionId":"` + id129 + `","timestamp":5,"payload":{}}`, invalid, nil},
		{"sessionId 128 escaped", `{"type":"pull","clientId":"c1","sessionId":"` + esc128 + `","timestamp":5,"payload":{}}`, ok, nil},
		{"sessionId 129 escaped", `{"type":"pull","clientId":"c1","sessionId":"` + esc129 + `","timestamp":5,"payload":{}}`, invalid, nil},
		{"sessionId server allowed", `{"type":"pull","clientId":"c1","sessionId":"server","timestamp":5,"payload":{}}`, ok, nil},
		{"sessionId duplicate", frame("pull", `{}`, `"sessionId":"s1"`), invalid, nil},

		// timestamp.
		{"timestamp missing", `{"type":"pull","clientId":"c1","sessionId":"s1","payload":{}}`, invalid, nil},
		{"timestamp string", `{"type":"pull","clientId":"c1","sessionId":"s1","timestamp":"5","payload":{}}`, invalid, nil},
		{"timestamp fraction", `{"type":"pull","clientId":"c1","sessionId":"s1","timestamp":5.0,"payload":{}}`, invalid, nil},
		{"timestamp exponent", `{"type":"pull","clientId":"c1","sessionId":"s1","timestamp":5e3,"payload":{}}`, invalid, nil},
		{"timestamp negative", `{"type":"pull","clientId":"c1","sessionId":"s1","timestamp":-5,"payload":{}}`, ok,
			func(t *testing.T, m *protocol.Message) { wantInt(t, "Timestamp", m.Timestamp, -5) }},
		{"timestamp max int64", `{"type":"pull","clientId":"c1","sessionId":"s1","timestamp":9223372036854775807,"payload":{}}`, ok,
			func(t *testing.T, m *protocol.Message) { wantInt(t, "Timestamp", m.Timestamp, 9223372036854775807) }},
		{"timestamp min int64", `{"type":"pull","clientId":"c1","sessionId":"s1","timestamp":-9223372036854775808,"payload":{}}`, ok,
			func(t *testing.T, m *protocol.Message) { wantInt(t, "Timestamp", m.Timestamp, -9223372036854775808) }},
		{"timestamp over int64", `{"type":"pull","clientId":"c1","sessionId":"s1","timestamp":9223372036854775808,"payload":{}}`, invalid, nil},
		{"timestamp under int64", `{"type":"pull","clientId":"c1","sessionId":"s1","timestamp":-9223372036854775809,"payload":{}}`, invalid, nil},
		{"timestamp huge", `{"type":"pull","clientId":"c1","sessionId":"s1","timestamp":123456789012345678901234567890,"payload":{}}`, invalid, nil},
		{"timestamp duplicate", frame("pull", `{}`, `"timestamp":5`), invalid, nil},

		// payload.
		{"payload missing", `{"type":"pull","clientId":"c1","sessionId":"s1","timestamp":5}`, invalid, nil},
		{"payload null", frame("pull", `null`), invalid, nil},
		{"payload array", frame("pull", `[]`), invalid, nil},
		{"payload duplicate", frame("pull", `{}`, `"payload":{}`), invalid, nil},
		{"unknown members everywhere", frame("peer_pull_response",
			`{"x":{"events":5,"hasMore":"no"},"requestId":"r1","events":[`+event(`"extra":{"eventName":1}`)+`],"hasMore":false,"y":[1,{"requestId":2}]}`,
			`"meta":{"type":"bogus","clientId":1,"payload":null}`, `"n":null`), ok,
			func(t *testing.T, m *protocol.Message) { wantInt(t, "EventCount", int64(m.EventCount), 1) }},

		// push.
		{"push empty events", frame("push", events()), ok, func(t *testing.T, m *protocol.Message) {
			wantInt(t, "EventCount", int64(m.EventCount), 0)
			wantInt(t, "LastEventTimestamp", m.LastEventTimestamp, 0)
		}},
		{"push events missing", frame("push", `{}`), invalid, nil},
		{"push events object", frame("push", `{"events":{}}`), invalid, nil},
		{"push events null", frame("push", `{"events":null}`), invalid, nil},
		{"push events duplicate", frame("push", `{"events":[],"events":[]}`), invalid, nil},
		{"push three events", frame("push", events(event(`"timestamp":1`), event(`"timestamp":2`), event(`"timestamp":3`))), ok,
			func(t *testing.T, m *protocol.Message) {
				wantInt(t, "EventCount", int64(m.EventCount), 3)
				wantInt(t, "LastEventTimestamp", m.LastEventTimestamp, 3)
			}},
		{"push event not object", frame("push", events(event(), `1`)), invalid, nil},
		{"push event null", frame("push", events(`null`)), invalid, nil},
		{"push event empty object", frame("push", events(`{}`)), invalid, nil},
		{"eventName missing", frame("push", events(event(`-eventName`))), invalid, nil},
		{"eventName empty", frame("push", events(event(`"eventName":""`))), invalid, nil},
		{"eventName number", frame("push", events(event(`"eventName":1`))), invalid, nil},
		{"eventName escaped", frame("push", events(event(`"eventName":"\u0000"`))), ok, nil},
		{"eventName duplicate", frame("push", events(event(`+"eventName":"f"`))), invalid, nil},
		{"eventNumber missing", frame("push", events(event(`-eventNumber`))), invalid, nil},
		{"eventNumber negative", frame("push", events(event(`"eventNumber":-1`))), invalid, nil},
		{"eventNumber zero", frame("push", events(event(`"eventNumber":0`))), ok, nil},
		{"eventNumber minus zero", frame("push", events(event(`"eventNumber":-0`))), ok, nil},
		{"eventNumber fraction", frame("push", events(event(`"eventNumber":1.5`))), invalid, nil},
		{"eventNumber string", frame("push", events(event(`"eventNumber":"1"`))), invalid, nil},
		{"eventNumber too big", frame("push", events(event(`"eventNumber":99999999999999999999`))), invalid, nil},
		{"eventNumber duplicate", frame("push", events(event(`+"eventNumber":2`))), invalid, nil},
		{"event clientId missing", frame("push", events(event(`-clientId`))), invalid, nil},
		{"event clientId number", frame("push", events(event(`"clientId":1`))), invalid, nil},
		{"event clientId empty", frame("push", events(event(`"clientId":""`))), ok, nil},
		{"event clientId duplicate", frame("push", events(event(`+"clientId":"c"`))), invalid, nil},
		{"event sessionId missing", frame("push", events(event(`-sessionId`))), invalid, nil},
		{"event sessionId null", frame("push", events(event(`"sessionId":null`))), invalid, nil},
		{"event sessionId empty", frame("push", events(event(`"sessionId":""`))), ok, nil},
		{"event sessionId duplicate", frame("push", events(event(`+"sessionId":"s"`))), invalid, nil},
		{"event timestamp missing", frame("push", events(event(`-timestamp`))), invalid, nil},
		{"event timestamp fraction", frame("push", events(event(`"timestamp":1.0`))), invalid, nil},
		{"event timestamp negative", frame("push", events(event(`"timestamp":-3`))), ok,
			func(t *testing.T, m *protocol.Message) { wantInt(t, "LastEventTimestamp", m.LastEventTimestamp, -3) }},
		{"event timestamp duplicate", frame("push", events(event(`+"timestamp":7`))), invalid, nil},
		{"event data missing", frame("push", events(event(`-data`))), invalid, nil},
		{"event data null", frame("push", events(event(`"data":null`))), ok, nil},
		{"event data any", frame("push", events(event(`"data":[1,"x",{"a":{}},true]`), event(`"data":"s"`), event(`"data":0`))), ok, nil},
		{"event data duplicate", frame("push", events(event(`+"data":1`))), invalid, nil},
		{"event nested unknown", frame("push", events(event(`"meta":{"eventName":"","eventNumber":-1,"data":{"data":1}}`))), ok, nil},
		{"event escaped keys", frame("push", events(`{"\u0065ventName":"e","eventNumber":1,"clientId":"c","sessionId":"s","timestamp":7,"dat\u0061":1}`)), ok, nil},
		{"event escaped duplicate key", frame("push", events(event(`+"\u0064ata":1`))), invalid, nil},
		{"push bad event among many", frame("push", events(event(), event(), event(`-data`), event())), invalid, nil},

		// Event count limit (the default, 1000).
		{"push 1000 events", frame("push", events(repeat(event(), 1000)...)), ok,
			func(t *testing.T, m *protocol.Message) { wantInt(t, "EventCount", int64(m.EventCount), 1000) }},
		{"push 1001 events", frame("push", events(repeat(event(), 1001)...)), limit, nil},
		{"push 1001 events one invalid", frame("push", events(append(repeat(event(), 1000), event(`"eventNumber":-1`))...)), invalid, nil},
		{"push 1001 events bad envelope", `{"type":"push","clientId":"","sessionId":"s1","timestamp":5,"payload":` + events(repeat(event(), 1001)...) + `}`, invalid, nil},

		// pull.
		{"pull no sinceTimestamp", frame("pull", `{}`), ok, func(t *testing.T, m *protocol.Message) {
			if m.HasSinceTimestamp {
				t.Error("HasSinceTimestamp set")
			}
		}},
		{"pull sinceTimestamp zero", frame("pull", `{"sinceTimestamp":0}`), ok, func(t *testing.T, m *protocol.Message) {
			if !m.HasSinceTimestamp || m.SinceTimestamp != 0 {
				t.Errorf("since = %d, %v", m.SinceTimestamp, m.HasSinceTimestamp)
			}
		}},
		{"pull sinceTimestamp negative", frame("pull", `{"sinceTimestamp":-1}`), invalid, nil},
		{"pull sinceTimestamp fraction", frame("pull", `{"sinceTimestamp":1.5}`), invalid, nil},
		{"pull sinceTimestamp string", frame("pull", `{"sinceTimestamp":"1"}`), invalid, nil},
		{"pull sinceTimestamp null", frame("pull", `{"sinceTimestamp":null}`), invalid, nil},
		{"pull sinceTimestamp duplicate", frame("pull", `{"sinceTimestamp":1,"sinceTimestamp":1}`), invalid, nil},
		{"pull ignores other types' members", frame("pull", `{"events":[1,2],"events":5,"requestId":7,"hasMore":"x","retentionDays":-1,"targetClientId":""}`), ok,
			func(t *testing.T, m *protocol.Message) {
				if m.EventCount != 0 || m.RequestID != nil || m.TargetClientID != nil || m.HasRetentionDays || m.HasMore {
					t.Errorf("unexpected fields: %+v", m)
				}
			}},

		// peer_pull.
		{"peer_pull minimal", frame("peer_pull", pp()), ok, func(t *testing.T, m *protocol.Message) {
			wantBytes(t, "RequestID", m.RequestID, "r1")
			if !m.HasSinceTimestamp || m.HasRetentionDays || m.TargetClientID != nil {
				t.Errorf("unexpected fields: %+v", m)
			}
		}},
		{"peer_pull requestId missing", frame("peer_pull", `{"sinceTimestamp":0}`), invalid, nil},
		{"peer_pull requestId empty", frame("peer_pull", `{"requestId":"","sinceTimestamp":0}`), invalid, nil},
		{"peer_pull requestId number", frame("peer_pull", `{"requestId":1,"sinceTimestamp":0}`), invalid, nil},
		{"peer_pull requestId 128", frame("peer_pull", `{"requestId":"`+id128+`","sinceTimestamp":0}`), ok, nil},
		{"peer_pull requestId 129", frame("peer_pull", `{"requestId":"`+id129+`","sinceTimestamp":0}`), invalid, nil},
		{"peer_pull requestId 128 escaped", frame("peer_pull", `{"requestId":"`+esc128+`","sinceTimestamp":0}`), ok,
			func(t *testing.T, m *protocol.Message) { wantBytes(t, "RequestID", m.RequestID, id128) }},
		{"peer_pull requestId 129 escaped", frame("peer_pull", `{"requestId":"`+esc129+`","sinceTimestamp":0}`), invalid, nil},
		{"peer_pull requestId duplicate", frame("peer_pull", pp(`"requestId":"r1"`)), invalid, nil},
		{"peer_pull sinceTimestamp missing", frame("peer_pull", `{"requestId":"r1"}`), invalid, nil},
		{"peer_pull sinceTimestamp negative", frame("peer_pull", `{"requestId":"r1","sinceTimestamp":-1}`), invalid, nil},
		{"peer_pull sinceTimestamp string", frame("peer_pull", `{"requestId":"r1","sinceTimestamp":"0"}`), invalid, nil},
		{"peer_pull sinceTimestamp duplicate", frame("peer_pull", pp(`"sinceTimestamp":0`)), invalid, nil},
		{"peer_pull retentionDays", frame("peer_pull", pp(`"retentionDays":0`)), ok, func(t *testing.T, m *protocol.Message) {
			if !m.HasRetentionDays || m.RetentionDays != 0 {
				t.Errorf("retention = %d, %v", m.RetentionDays, m.HasRetentionDays)
			}
		}},
		{"peer_pull retentionDays negative", frame("peer_pull", pp(`"retentionDays":-1`)), invalid, nil},
		{"peer_pull retentionDays fraction", frame("peer_pull", pp(`"retentionDays":1.5`)), invalid, nil},
		{"peer_pull retentionDays null", frame("peer_pull", pp(`"retentionDays":null`)), invalid, nil},
		{"peer_pull retentionDays duplicate", frame("peer_pull", pp(`"retentionDays":1`, `"retentionDays":1`)), invalid, nil},
		{"peer_pull targetClientId", frame("peer_pull", pp(`"targetClientId":"peer\u002d2"`)), ok,
			func(t *testing.T, m *protocol.Message) { wantBytes(t, "TargetClientID", m.TargetClientID, "peer-2") }},
		{"peer_pull targetClientId empty", frame("peer_pull", pp(`"targetClientId":""`)), invalid, nil},
		{"peer_pull targetClientId 128", frame("peer_pull", pp(`"targetClientId":"`+id128+`"`)), ok, nil},
		{"peer_pull targetClientId 129", frame("peer_pull", pp(`"targetClientId":"`+id129+`"`)), invalid, nil},
		{"peer_pull targetClientId number", frame("peer_pull", pp(`"targetClientId":1`)), invalid, nil},
		{"peer_pull targetClientId null", frame("peer_pull", pp(`"targetClientId":null`)), invalid, nil},
		{"peer_pull targetClientId duplicate", frame("peer_pull", pp(`"targetClientId":"a"`, `"targetClientId":"a"`)), invalid, nil},
		{"peer_pull ignores events", frame("peer_pull", pp(`"events":[{}]`)), ok, nil},

		// peer_pull_response.
		{"ppr", frame("peer_pull_response", ppr(event(`"timestamp":11`))), ok, func(t *testing.T, m *protocol.Message) {
			wantBytes(t, "RequestID", m.RequestID, "r1")
			wantInt(t, "EventCount", int64(m.EventCount), 1)
			wantInt(t, "LastEventTimestamp", m.LastEventTimestamp, 11)
			if !m.HasMore {
				t.Error("HasMore not set")
			}
		}},
		{"ppr empty events", frame("peer_pull_response", ppr()), ok, nil},
		{"ppr hasMore missing", frame("peer_pull_response", `{"requestId":"r1","events":[]}`), invalid, nil},
		{"ppr hasMore string", frame("peer_pull_response", `{"requestId":"r1","events":[],"hasMore":"false"}`), invalid, nil},
		{"ppr hasMore null", frame("peer_pull_response", `{"requestId":"r1","events":[],"hasMore":null}`), invalid, nil},
		{"ppr hasMore duplicate", frame("peer_pull_response", `{"requestId":"r1","events":[],"hasMore":true,"hasMore":true}`), invalid, nil},
		{"ppr requestId missing", frame("peer_pull_response", `{"events":[],"hasMore":false}`), invalid, nil},
		{"ppr requestId 129", frame("peer_pull_response", `{"requestId":"`+id129+`","events":[],"hasMore":false}`), invalid, nil},
		{"ppr events missing", frame("peer_pull_response", `{"requestId":"r1","hasMore":false}`), invalid, nil},
		{"ppr bad event", frame("peer_pull_response", ppr(event(`"eventNumber":-1`))), invalid, nil},
		{"ppr 1001 events", frame("peer_pull_response", ppr(repeat(event(), 1001)...)), limit, nil},
		{"ppr 1001 events no hasMore", frame("peer_pull_response", `{"requestId":"r1","events":[`+strings.Join(repeat(event(), 1001), ",")+`]}`), invalid, nil},

		// Sequenced stores: storeId on every type.
		{"storeId pull", frame("pull", `{"storeId":"st","head":{"eventNumber":0}}`), ok, func(t *testing.T, m *protocol.Message) {
			wantBytes(t, "storeId", m.StoreID, "st")
			wantInt(t, "head", m.Head.EventNumber, 0)
			if m.Head.ClientID != nil || m.Head.SessionID != nil {
				t.Errorf("head ids at 0: %q %q", m.Head.ClientID, m.Head.SessionID)
			}
		}},
		{"storeId 128", frame("pull", `{"storeId":"`+id128+`","head":{"eventNumber":0}}`), ok, nil},
		{"storeId 129", frame("pull", `{"storeId":"`+id129+`","head":{"eventNumber":0}}`), invalid, nil},
		{"storeId escaped 128", frame("pull", `{"storeId":"`+esc128+`","head":{"eventNumber":0}}`), ok, nil},
		{"storeId empty", frame("pull", `{"storeId":"","head":{"eventNumber":0}}`), invalid, nil},
		{"storeId number", frame("pull", `{"storeId":7,"head":{"eventNumber":0}}`), invalid, nil},
		{"storeId null", frame("push", `{"storeId":null,"events":[]}`), invalid, nil},
		{"storeId duplicate", frame("pull", `{"storeId":"a","storeId":"a","head":{"eventNumber":0}}`), invalid, nil},
		{"storeId on peer_pull_response", frame("peer_pull_response", `{"storeId":"a","requestId":"r1","events":[],"hasMore":false}`), ok, nil},
		{"storeId bad on peer_pull_response", frame("peer_pull_response", `{"storeId":1,"requestId":"r1","events":[],"hasMore":false}`), invalid, nil},
		{"storeId bad on peer_pull", frame("peer_pull", pp(`"storeId":""`)), invalid, nil},

		// The announced head of a join.
		{"head full", frame("pull", `{"storeId":"st","head":{"eventNumber":4,"clientId":"c\u0041","sessionId":"s"}}`), ok, func(t *testing.T, m *protocol.Message) {
			wantInt(t, "head", m.Head.EventNumber, 4)
			wantBytes(t, "head.clientId", m.Head.ClientID, "cA")
			wantBytes(t, "head.sessionId", m.Head.SessionID, "s")
		}},
		{"head empty ids", frame("pull", `{"storeId":"st","head":{"eventNumber":4,"clientId":"","sessionId":""}}`), ok, nil},
		{"head missing", frame("pull", `{"storeId":"st"}`), invalid, nil},
		{"head not object", frame("pull", `{"storeId":"st","head":4}`), invalid, nil},
		{"head duplicate", frame("pull", `{"storeId":"st","head":{"eventNumber":0},"head":{"eventNumber":0}}`), invalid, nil},
		{"head number missing", frame("pull", `{"storeId":"st","head":{}}`), invalid, nil},
		{"head number negative", frame("pull", `{"storeId":"st","head":{"eventNumber":-1}}`), invalid, nil},
		{"head number float", frame("pull", `{"storeId":"st","head":{"eventNumber":1.5,"clientId":"c","sessionId":"s"}}`), invalid, nil},
		{"head number duplicate", frame("pull", `{"storeId":"st","head":{"eventNumber":0,"eventNumber":0}}`), invalid, nil},
		{"head ids missing above 0", frame("pull", `{"storeId":"st","head":{"eventNumber":1}}`), invalid, nil},
		{"head sessionId missing above 0", frame("pull", `{"storeId":"st","head":{"eventNumber":1,"clientId":"c"}}`), invalid, nil},
		{"head clientId number above 0", frame("pull", `{"storeId":"st","head":{"eventNumber":1,"clientId":1,"sessionId":"s"}}`), invalid, nil},
		{"head ids ignored at 0", frame("pull", `{"storeId":"st","head":{"eventNumber":0,"clientId":1,"sessionId":null}}`), ok, nil},
		{"head id duplicate at 0", frame("pull", `{"storeId":"st","head":{"eventNumber":0,"clientId":"a","clientId":"a"}}`), invalid, nil},
		{"head id duplicate", frame("pull", `{"storeId":"st","head":{"eventNumber":2,"clientId":"a","sessionId":"s","sessionId":"s"}}`), invalid, nil},
		{"head without storeId ignored", frame("pull", `{"head":7}`), ok, nil},

		// The chain of a sequenced push.
		{"chain ok", frame("push", `{"storeId":"st","events":[`+event(`"eventNumber":3`, `"parentEventNumber":2`)+`,`+event(`"eventNumber":4`, `"parentEventNumber":3`, `"clientId":"c\u0042"`, `"sessionId":"s2"`)+`]}`), ok, func(t *testing.T, m *protocol.Message) {
			wantInt(t, "firstParent", m.FirstParent, 2)
			wantInt(t, "last", m.LastEvent.EventNumber, 4)
			wantBytes(t, "last.clientId", m.LastEvent.ClientID, "cB")
			wantBytes(t, "last.sessionId", m.LastEvent.SessionID, "s2")
		}},
		{"chain from 0", frame("push", `{"storeId":"st","events":[`+event(`"eventNumber":1`, `"parentEventNumber":0`)+`]}`), ok, nil},
		{"chain empty", frame("push", `{"storeId":"st","events":[]}`), ok, nil},
		{"chain parent missing", frame("push", `{"storeId":"st","events":[`+event()+`]}`), invalid, nil},
		{"chain parent missing plain push", frame("push", events(event())), ok, nil},
		{"chain broken plain push", frame("push", events(event(`"eventNumber":5`, `"parentEventNumber":1`))), ok, nil},
		{"chain parent negative", frame("push", `{"storeId":"st","events":[`+event(`"eventNumber":0`, `"parentEventNumber":-1`)+`]}`), invalid, nil},
		{"chain parent string", frame("push", `{"storeId":"st","events":[`+event(`"parentEventNumber":"0"`)+`]}`), invalid, nil},
		{"chain parent duplicate", frame("push", `{"storeId":"st","events":[`+event(`"parentEventNumber":0`, `+"parentEventNumber":0`)+`]}`), invalid, nil},
		{"chain number not parent+1", frame("push", `{"storeId":"st","events":[`+event(`"eventNumber":3`, `"parentEventNumber":1`)+`]}`), invalid, nil},
		{"chain gap", frame("push", `{"storeId":"st","events":[`+event(`"eventNumber":1`, `"parentEventNumber":0`)+`,`+event(`"eventNumber":3`, `"parentEventNumber":2`)+`]}`), invalid, nil},
		{"chain repeat", frame("push", `{"storeId":"st","events":[`+event(`"eventNumber":1`, `"parentEventNumber":0`)+`,`+event(`"eventNumber":1`, `"parentEventNumber":0`)+`]}`), invalid, nil},
		{"chain parent max", frame("push", `{"storeId":"st","events":[`+event(`"eventNumber":9223372036854775807`, `"parentEventNumber":9223372036854775807`)+`]}`), invalid, nil},
		{"chain broken over limit", frame("push", `{"storeId":"st","events":[`+strings.Join(repeat(event(`"eventNumber":1`, `"parentEventNumber":0`), 1001), ",")+`]}`), invalid, nil},

		// sinceEventNumber of a sequenced peer_pull.
		{"sinceEventNumber", frame("peer_pull", pp(`"storeId":"st"`, `"sinceEventNumber":3`)), ok, func(t *testing.T, m *protocol.Message) {
			wantInt(t, "sinceEventNumber", m.SinceEventNumber, 3)
			if !m.HasSinceEventNumber {
				t.Error("HasSinceEventNumber unset")
			}
		}},
		{"sinceEventNumber negative", frame("peer_pull", pp(`"storeId":"st"`, `"sinceEventNumber":-3`)), invalid, nil},
		{"sinceEventNumber duplicate", frame("peer_pull", pp(`"storeId":"st"`, `"sinceEventNumber":3`, `"sinceEventNumber":3`)), invalid, nil},
		{"sinceEventNumber without storeId ignored", frame("peer_pull", pp(`"sinceEventNumber":"x"`)), ok, nil},
	}
}

func TestDecodeRules(t *testing.T) {
	dec := protocol.NewDecoder(protocol.Limits{})
	for _, tt := range ruleCases() {
		t.Run(tt.name, func(t *testing.T) {
			var m protocol.Message
			err := dec.Decode([]byte(tt.frame), &m)
			if got := codeOf(t, err); got != tt.code {
				t.Fatalf("code = %v (%v), want %v", got, err, tt.code)
			}
			if tt.check != nil {
				tt.check(t, &m)
			}
		})
	}
}

func TestDecodeLimit(t *testing.T) {
	dec := protocol.NewDecoder(protocol.Limits{MaxEventsPerPush: 2})
	var m protocol.Message
	if err := dec.Decode([]byte(frame("push", events(event(), event()))), &m); err != nil {
		t.Fatalf("2 events: %v", err)
	}
	err := dec.Decode([]byte(frame("push", events(event(), event(), event()))), &m)
	if got := codeOf(t, err); got != limit {
		t.Fatalf("3 events: %v", err)
	}
	if m.Type != protocol.TypePush || m.EventCount != 3 {
		t.Errorf("after limit error: Type %v EventCount %d", m.Type, m.EventCount)
	}
	err = dec.Decode([]byte(frame("peer_pull_response", ppr(event(), event(), event()))), &m)
	if got := codeOf(t, err); got != limit {
		t.Fatalf("3 events in peer_pull_response: %v", err)
	}

	var nilDecoder *protocol.Decoder
	if err := nilDecoder.Decode([]byte(seedPush), &m); err != nil {
		t.Errorf("nil Decoder: %v", err)
	}
}

func TestDecodeResetsMessage(t *testing.T) {
	dec := protocol.NewDecoder(protocol.Limits{})
	m := protocol.Message{RequestID: []byte("old"), HasMore: true, TargetClientID: []byte("t"), EventCount: 9}
	if err := dec.Decode([]byte(seedPull), &m); err != nil {
		t.Fatal(err)
	}
	if m.RequestID != nil || m.HasMore || m.TargetClientID != nil || m.EventCount != 0 {
		t.Errorf("stale fields kept: %+v", m)
	}
}

// TestDecodeAliasesFrame checks that unescaped strings are views of the
// frame rather than copies.
func TestDecodeAliasesFrame(t *testing.T) {
	f := []byte(seedPeerPull)
	var m protocol.Message
	if err := protocol.NewDecoder(protocol.Limits{}).Decode(f, &m); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"ClientID": m.ClientID, "SessionID": m.SessionID, "RequestID": m.RequestID} {
		if !within(b, f) {
			t.Errorf("%s does not alias the frame", name)
		}
	}
}

func within(b, f []byte) bool {
	start := uintptr(unsafe.Pointer(unsafe.SliceData(f)))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return p >= start && p+uintptr(len(b)) <= start+uintptr(len(f))
}

func TestErrorMessagesAreFixed(t *testing.T) {
	secret := "zq-secret-zq"
	frames := []string{
		`{"type":"` + secret + `"}`,
		frame("pull", `{}`, `"clientId":"`+secret+`"`),
		`{"type":"pull","clientId":"` + secret + strings.Repeat("x", 200) + `"}`,
		frame("push", events(event(`"eventName":"`+secret+`"`, `"eventNumber":"`+secret+`"`))),
		`{"` + secret + `":`,
	}
	dec := protocol.NewDecoder(protocol.Limits{})
	for _, f := range frames {
		var m protocol.Message
		err := dec.Decode([]byte(f), &m)
		if err == nil {
			t.Fatalf("%q accepted", f)
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error %q echoes client data", err)
		}
	}
}

func TestTypeAndCodeStrings(t *testing.T) {
	types := map[protocol.Type]string{
		protocol.TypeUnknown:          "unknown",
		protocol.TypePush:             "push",
		protocol.TypePull:             "pull",
		protocol.TypePeerPull:         "peer_pull",
		protocol.TypePeerPullResponse: "peer_pull_response",
		protocol.Type(200):            "unknown",
	}
	for typ, want := range types {
		if got := typ.String(); got != want {
			t.Errorf("Type(%d).String() = %q, want %q", typ, got, want)
		}
	}
	// A type or code added to a list without a name (or a name without a
	// place in the list) shows here.
	for typ := protocol.TypePush; typ < protocol.NumTypes; typ++ {
		if typ.String() == "unknown" {
			t.Errorf("Type(%d) has no name", typ)
		}
	}
	if s := protocol.NumTypes.String(); s != "unknown" {
		t.Errorf("NumTypes is named %q: a type is missing from the list", s)
	}
	if s := protocol.NumCodes.String(); s != "unknown" {
		t.Errorf("NumCodes is named %q: a code is missing from the list", s)
	}
	want := []string{"invalid_message", "unsupported_type", "client_mismatch", "unknown_request", "limit_exceeded", "rate_limited", "internal_error", "store_conflict", "head_mismatch"}
	codes := protocol.AllCodes()
	if len(codes) != len(want) {
		t.Fatalf("AllCodes() has %d codes, want %d", len(codes), len(want))
	}
	for i, c := range codes {
		if c.String() != want[i] {
			t.Errorf("code %d = %q, want %q", c, c, want[i])
		}
	}
	if s := protocol.Code(0).String(); s != "unknown" {
		t.Errorf("Code(0).String() = %q", s)
	}
	codes[0] = 0
	if protocol.AllCodes()[0] != protocol.CodeInvalidMessage {
		t.Error("AllCodes shares its slice")
	}
	e := &protocol.Error{Code: protocol.CodeLimitExceeded, Message: "too many"}
	if e.Error() != "limit_exceeded: too many" {
		t.Errorf("Error() = %q", e.Error())
	}
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func codeOf(t *testing.T, err error) protocol.Code {
	t.Helper()
	if err == nil {
		return 0
	}
	var perr *protocol.Error
	if !errors.As(err, &perr) {
		t.Fatalf("error %v is %T, not *protocol.Error", err, err)
	}
	if perr.Message == "" {
		t.Errorf("error with code %v has no message", perr.Code)
	}
	return perr.Code
}

func wantType(t *testing.T, m *protocol.Message, want protocol.Type) {
	t.Helper()
	if m.Type != want {
		t.Errorf("Type = %v, want %v", m.Type, want)
	}
}

func wantBytes(t *testing.T, field string, got []byte, want string) {
	t.Helper()
	if string(got) != want {
		t.Errorf("%s = %q, want %q", field, got, want)
	}
}

func wantInt(t *testing.T, field string, got, want int64) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %d, want %d", field, got, want)
	}
}

// TestDecodeNestingLimit shows the nesting limit and that its rejection
// names it, unlike other malformed JSON.
func TestDecodeNestingLimit(t *testing.T) {
	const limit = 128
	// The message is level 1, payload 2, events 3, an event 4, its data 5.
	nested := func(levels int) []byte {
		data := strings.Repeat("[", levels-4) + strings.Repeat("]", levels-4)
		return []byte(`{"type":"push","clientId":"c","sessionId":"s","timestamp":1,"payload":{"events":[{"eventName":"e","eventNumber":0,"clientId":"c","sessionId":"s","timestamp":1,"data":` + data + `}]}}`)
	}
	dec := protocol.NewDecoder(protocol.Limits{})
	var m protocol.Message
	if err := dec.Decode(nested(limit), &m); err != nil {
		t.Fatalf("%d levels: %v", limit, err)
	}
	err := dec.Decode(nested(limit+1), &m)
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Code != protocol.CodeInvalidMessage {
		t.Fatalf("%d levels: got %v, want invalid_message", limit+1, err)
	}
	if !strings.Contains(pe.Message, "128 levels") {
		t.Errorf("%d levels: message %q does not state the limit", limit+1, pe.Message)
	}
	if err := dec.Decode([]byte(`{"type":`), &m); err == nil || strings.Contains(err.Error(), "levels") {
		t.Errorf("syntax error: got %v, want the plain JSON rejection", err)
	}
}
