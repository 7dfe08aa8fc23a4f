package protocol_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/livestore-relay/livestore-relay/protocol"
)

// benchEvent is a realistic event of about 180 bytes.
const benchEvent = `{"eventName":"message.created","eventNumber":42,"clientId":"device-abc-123","sessionId":"session-xyz-456","data":{"conversationId":"conv-123","text":"Hello world!"},"timestamp":1733644800000}`

func pushFrame(n int) []byte {
	evs := make([]string, n)
	for i := range evs {
		evs[i] = benchEvent
	}
	return []byte(`{"type":"push","clientId":"device-abc-123","sessionId":"session-xyz-456","timestamp":1733644800000,"payload":{"events":[` + strings.Join(evs, ",") + `]}}`)
}

func TestDecodeDoesNotAllocate(t *testing.T) {
	dec := protocol.NewDecoder(protocol.Limits{})
	// want is the code of the error Decode must return; 0: it accepts the frame.
	frames := []struct {
		name  string
		frame []byte
		want  protocol.Code
	}{
		{"push 5", pushFrame(5), 0},
		{"pull", []byte(seedPull), 0},
		{"peer_pull", []byte(seedPeerPull), 0},
		{"peer_pull_response", []byte(seedPeerPullResponse), 0},
		{"escaped keys", []byte(`{"\u0074ype":"pull","clientId":"c","sessionId":"s","timestamp":1,"payload":{}}`), 0},
		{"rejected", []byte(`{"type":"push","clientId":"c","sessionId":"s","timestamp":1,"payload":{"events":[{}]}}`), protocol.CodeInvalidMessage},
		{"unsupported", []byte(`{"type":"x"}`), protocol.CodeUnsupportedType},
		{"not JSON", []byte(`{"type":`), protocol.CodeInvalidMessage},
		{"store push", []byte(`{"type":"push","clientId":"c","sessionId":"s","timestamp":1,"payload":{"storeId":"st","events":[{"eventName":"e","eventNumber":2,"parentEventNumber":1,"clientId":"c","sessionId":"s","timestamp":1,"data":{}}]}}`), 0},
		{"store pull", []byte(`{"type":"pull","clientId":"c","sessionId":"s","timestamp":1,"payload":{"storeId":"st","head":{"eventNumber":2,"clientId":"c","sessionId":"s"}}}`), 0},
	}
	for _, tc := range frames {
		var m protocol.Message
		var err error
		allocs := testing.AllocsPerRun(100, func() {
			err = dec.Decode(tc.frame, &m)
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations", tc.name, allocs)
		}
		var perr *protocol.Error
		switch {
		case tc.want == 0 && err != nil:
			t.Errorf("%s: %v, want the frame accepted", tc.name, err)
		case tc.want != 0 && (!errors.As(err, &perr) || perr.Code != tc.want):
			t.Errorf("%s: error %v, want code %v", tc.name, err, tc.want)
		}
	}
}

func TestEncodersDoNotAllocate(t *testing.T) {
	buf := make([]byte, 0, 1024)
	peers := []string{"device-def-789", "device-ghi-012"}
	id := []byte("req-abc-123")
	encoders := map[string]func(){
		"ack":           func() { buf = protocol.AppendAck(buf[:0], 1733644800000, 3, 1733641000000) },
		"pull_response": func() { buf = protocol.AppendPullResponse(buf[:0], 1733644800000, peers) },
		"peer_pull_response": func() {
			buf = protocol.AppendServerPeerPullResponse(buf[:0], 1733644800000, id)
		},
		"store ack": func() {
			buf = protocol.AppendStoreAck(buf[:0], 1733644800000, 3, 1733641000000, "store", protocol.Head{EventNumber: 9, ClientID: "c", SessionID: "s"})
		},
		"error reply": func() {
			buf = protocol.AppendErrorReply(buf[:0], 1733644800000, protocol.CodeHeadMismatch, "m", protocol.ReplyTo{Type: protocol.TypePush, StoreID: "st"}, &protocol.Head{})
		},
		"error": func() {
			buf = protocol.AppendError(buf[:0], 1733644800000, protocol.CodeInvalidMessage, "payload \"x\"\n\xff")
		},
	}
	for name, enc := range encoders {
		if allocs := testing.AllocsPerRun(100, enc); allocs != 0 {
			t.Errorf("%s: %v allocations", name, allocs)
		}
	}
}

func BenchmarkDecodePush(b *testing.B) {
	dec := protocol.NewDecoder(protocol.Limits{})
	for _, n := range []int{1, 10, 100} {
		f := pushFrame(n)
		b.Run(fmt.Sprintf("%d_events", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(f)))
			var m protocol.Message
			for b.Loop() {
				if err := dec.Decode(f, &m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkAppendAck(b *testing.B) {
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	b.SetBytes(int64(len(protocol.AppendAck(nil, 1733644800000, 100, 1733644800000))))
	for b.Loop() {
		buf = protocol.AppendAck(buf[:0], 1733644800000, 100, 1733644800000)
	}
}
