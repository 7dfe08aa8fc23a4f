package soak

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/gobwas/ws"
)

func TestFramesDecodeAsSent(t *testing.T) {
	id := newIdentity(`us"er\1`, "dev2", "sess", 2, "")

	push := id.appendPush(nil, 1700000000000, pushSpec{seq: 9, eventNumber: 40, ts: 1700000000123, sentNs: 42, events: 3, pad: 10})
	if !json.Valid(push) {
		t.Fatalf("push is not JSON: %s", push)
	}
	var m inbound
	if err := decodeInbound(push, &m); err != nil {
		t.Fatal(err)
	}
	if m.Type != "push" || m.ClientID != "dev2" || len(m.Events) != 3 {
		t.Fatalf("decoded %+v", m)
	}
	for i, e := range m.Events {
		want := stamp{User: `us"er\1`, Device: 2, Client: "dev2", Seq: 9, Index: i, SentNs: 42, Number: int64(40 + i)}
		if e != want {
			t.Errorf("event %d: %+v, want %+v", i, e, want)
		}
	}
	// The standard library agrees on the envelope and the events' shape.
	var std struct {
		Payload struct {
			Events []struct {
				EventNumber int64  `json:"eventNumber"`
				Timestamp   int64  `json:"timestamp"`
				SessionID   string `json:"sessionId"`
				Data        struct {
					P string `json:"p"`
				} `json:"data"`
			} `json:"events"`
		} `json:"payload"`
	}
	if err := json.Unmarshal(push, &std); err != nil {
		t.Fatal(err)
	}
	if ev := std.Payload.Events[2]; ev.EventNumber != 42 || ev.Timestamp != 1700000000123 || ev.SessionID != "sess" || len(ev.Data.P) != 10 {
		t.Errorf("third event %+v", ev)
	}

	for _, b := range [][]byte{
		id.appendPull(nil, 1),
		id.appendPeerPull(nil, 1, "r.1\"x"),
		id.appendPeerPullResponse(nil, 1, "r.1\"x", 1, true),
	} {
		if !json.Valid(b) {
			t.Errorf("not JSON: %s", b)
		}
	}
	resp := id.appendPeerPullResponse(nil, 1, "r.1\"x", 2, false)
	if err := decodeInbound(resp, &m); err != nil {
		t.Fatal(err)
	}
	if m.Type != "peer_pull_response" || m.RequestID != "r.1\"x" || !m.HasHasMore || m.HasMore || len(m.Events) != 1 || m.Events[0].User != `us"er\1` {
		t.Errorf("peer_pull_response decoded as %+v", m)
	}
}

func TestDecodeServerMessages(t *testing.T) {
	cases := []struct {
		in   string
		want inbound
	}{
		{`{"type":"ack","clientId":"server","sessionId":"","timestamp":1,"payload":{"receivedCount":3,"lastTimestamp":-17}}`,
			inbound{Type: "ack", ClientID: "server", HasReceivedCount: true, ReceivedCount: 3, LastTimestamp: -17}},
		{` { "type" : "error" , "code":"rate_limited","message":"slow \u0064own","clientId":"server"} `,
			inbound{Type: "error", ClientID: "server", Code: "rate_limited", Message: "slow down"}},
		{`{"type":"pull_response","clientId":"server","sessionId":"","timestamp":1,"payload":{"events":[],"fromClientId":"server","hasMore":false},"onlinePeers":["a","b"]}`,
			inbound{Type: "pull_response", ClientID: "server", HasHasMore: true}},
		{`{"type":"peer_pull_response","clientId":"server","payload":{"requestId":"q","events":[],"hasMore":false}}`,
			inbound{Type: "peer_pull_response", ClientID: "server", RequestID: "q", HasHasMore: true}},
		// Unknown fields of every kind are skipped.
		{`{"x":[1,-2.5e3,{"y":null},"\"]"],"type":"push","z":{"a":[true,false]},"payload":{"events":[{"data":"text"},{"data":{"u":"v","n":1.5,"q":[]}}]}}`,
			inbound{Type: "push", Events: []stamp{{}, {User: "v"}}}},
	}
	for _, c := range cases {
		var m inbound
		if err := decodeInbound([]byte(c.in), &m); err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if len(m.Events) == 0 {
			m.Events = nil
		}
		if !equalInbound(m, c.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", c.in, m, c.want)
		}
	}
	for _, bad := range []string{``, `{`, `{"type":}`, `{"type":"ack",}`, `[]`, `{"type":"a"} x`, `{"payload":{"receivedCount":1.5}}`,
		`{"type":"a` + "\x01" + `"}`, `{"payload":{"hasMore":nope}}`, `{"a":-}`, `{"a":1.}`, `{"a":[1 2]}`} {
		var m inbound
		if err := decodeInbound([]byte(bad), &m); err == nil {
			t.Errorf("%q decoded without error: %+v", bad, m)
		}
	}
}

func equalInbound(a, b inbound) bool {
	return slices.Equal(a.Events, b.Events) &&
		a.Type == b.Type && a.ClientID == b.ClientID && a.Code == b.Code && a.Message == b.Message &&
		a.HasReceivedCount == b.HasReceivedCount && a.ReceivedCount == b.ReceivedCount &&
		a.LastTimestamp == b.LastTimestamp && a.RequestID == b.RequestID &&
		a.HasHasMore == b.HasHasMore && a.HasMore == b.HasMore
}

func FuzzDecodeInbound(f *testing.F) {
	id := newIdentity("u", "dev0", "s", 0, "")
	f.Add(id.appendPush(nil, 1, pushSpec{seq: 1, events: 2, pad: 3}))
	f.Add([]byte(`{"type":"ack","payload":{"receivedCount":1,"lastTimestamp":2}}`))
	f.Add([]byte(`{"a":[{"b":"\"\\"}],"payload":{"events":[{"data":{"u":"x"}}]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var m inbound
		err := decodeInbound(b, &m)
		// The scanner is lenient only inside strings (it does not check
		// escapes or UTF-8); anything it accepts is otherwise JSON.
		if err == nil && !json.Valid(b) && bytes.IndexByte(b, '\\') < 0 && isASCII(b) {
			t.Errorf("accepted invalid JSON %q", b)
		}
	})
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "plain", `q"b\s`, "ctl\x00\x1f\n", "ünï☃", "bad\xffutf8"} {
		got := appendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Errorf("%q encoded as invalid JSON %s: %v", s, got, err)
			continue
		}
		want := strings.ToValidUTF8(s, "\ufffd")
		if back != want {
			t.Errorf("%q round-tripped as %q", s, back)
		}
	}
}

func TestFrameBuilderWritesMaskedFrames(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 127, 65535, 65536, 70000} {
		var fb frameBuilder
		fb.reset()
		payload := bytes.Repeat([]byte{'a'}, n)
		fb.b = append(fb.b, payload...)
		frame := fb.finish(ws.OpText, [4]byte{1, 2, 3, 4})
		r := bufio.NewReader(bytes.NewReader(frame))
		h, err := ws.ReadHeader(r)
		if err != nil {
			t.Fatalf("len %d: %v", n, err)
		}
		if !h.Fin || !h.Masked || h.OpCode != ws.OpText || h.Length != int64(n) {
			t.Fatalf("len %d: header %+v", n, h)
		}
		got := make([]byte, h.Length)
		if _, err := io.ReadFull(r, got); err != nil {
			t.Fatalf("len %d: %v", n, err)
		}
		ws.Cipher(got, h.Mask, 0)
		if !bytes.Equal(got, payload) {
			t.Fatalf("len %d: payload differs", n)
		}
		if r.Buffered() != 0 {
			t.Fatalf("len %d: %d bytes after the frame", n, r.Buffered())
		}
	}
}

func TestStampBytesSizesPadding(t *testing.T) {
	id := newIdentity("user-1", "dev0", "s", 0, "")
	for _, want := range []int{150, 1000} {
		pad := want - stampBytes(&id)
		b := id.appendPush(nil, 1, pushSpec{seq: 123456, events: 1, pad: pad, sentNs: 1_700_000_000_000_000_000})
		var v struct {
			Payload struct {
				Events []struct {
					Data json.RawMessage `json:"data"`
				} `json:"events"`
			} `json:"payload"`
		}
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
		// stampBytes sizes for the widest numbers, so data never exceeds the target.
		if got := len(v.Payload.Events[0].Data); got > want || got < want-20 {
			t.Errorf("data is %d bytes, want about %d", got, want)
		}
	}
}

func TestStoreFrames(t *testing.T) {
	id := newIdentity("u", "dev0", "s", 0, "todos")
	var pull struct {
		Payload struct {
			StoreID string `json:"storeId"`
			Head    struct {
				EventNumber *int64 `json:"eventNumber"`
			} `json:"head"`
		} `json:"payload"`
	}
	b := id.appendPull(nil, 1)
	if err := json.Unmarshal(b, &pull); err != nil || pull.Payload.StoreID != "todos" || pull.Payload.Head.EventNumber == nil || *pull.Payload.Head.EventNumber != 0 {
		t.Fatalf("join %s: %v", b, err)
	}
	var push struct {
		Payload struct {
			StoreID string `json:"storeId"`
			Events  []struct {
				EventNumber       int64 `json:"eventNumber"`
				ParentEventNumber int64 `json:"parentEventNumber"`
			} `json:"events"`
		} `json:"payload"`
	}
	b = id.appendPush(nil, 1, pushSpec{seq: 1, eventNumber: 8, ts: 1, events: 3})
	if err := json.Unmarshal(b, &push); err != nil || push.Payload.StoreID != "todos" || len(push.Payload.Events) != 3 {
		t.Fatalf("push %s: %v", b, err)
	}
	for i, e := range push.Payload.Events {
		if e.EventNumber != int64(8+i) || e.ParentEventNumber != int64(7+i) {
			t.Errorf("event %d: %+v", i, e)
		}
	}
	var m inbound
	ack := []byte(`{"type":"ack","payload":{"receivedCount":1,"lastTimestamp":5,"storeId":"todos","head":{"eventNumber":12,"clientId":"c","sessionId":"s"}}}`)
	if err := decodeInbound(ack, &m); err != nil || !m.HasHead || m.HeadNumber != 12 {
		t.Fatalf("ack head: %+v %v", m, err)
	}
}
