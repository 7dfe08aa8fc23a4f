package wsframe

import (
	"bytes"
	"fmt"
	"io"
	"testing"

	"github.com/gobwas/ws"
)

// FuzzReadHeader holds the allocation-free header parser to the library's.
func FuzzReadHeader(f *testing.F) {
	for _, h := range []ws.Header{
		{Fin: true, OpCode: ws.OpText, Length: 5, Masked: true, Mask: [4]byte{1, 2, 3, 4}},
		{Fin: false, OpCode: ws.OpContinuation, Length: 300, Masked: true},
		{Fin: true, OpCode: ws.OpBinary, Length: 1 << 20, Masked: true},
		{Fin: true, OpCode: ws.OpClose, Length: 2},
		{Fin: true, OpCode: ws.OpPing, Rsv: 3},
	} {
		var b bytes.Buffer
		if err := ws.WriteHeader(&b, h); err != nil {
			f.Fatal(err)
		}
		f.Add(b.Bytes())
	}
	f.Add([]byte{0x81, 126, 0, 5})
	f.Add([]byte{0x81, 127, 0x80, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		want, werr := ws.ReadHeader(bytes.NewReader(in))
		var got ws.Header
		var gerr error
		if len(in) < 2 || len(in) < HeaderSize(in[0], in[1]) {
			gerr = io.ErrUnexpectedEOF
		} else {
			got, gerr = ParseHeader(in[:HeaderSize(in[0], in[1])])
		}
		if werr == nil && gerr == ws.ErrHeaderLengthUnexpected && nonMinimal(in) {
			return // RFC 6455 §5.2 requires the minimal length encoding; the library does not check
		}
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("errors differ: library %v, ours %v", werr, gerr)
		}
		if werr == nil && want != got {
			t.Fatalf("headers differ: library %+v, ours %+v", want, got)
		}
	})
}

func nonMinimal(in []byte) bool {
	switch in[1] & 0x7f {
	case 126:
		return len(in) >= 4 && int(in[2])<<8|int(in[3]) < 126
	case 127:
		return len(in) >= 10 && bytes.Equal(in[2:7], make([]byte, 5)) && in[7] == 0
	}
	return false
}

// TestServerFramesReadBack reads every frame the server makes with the
// library's reader, as a client would.
func TestServerFramesReadBack(t *testing.T) {
	long := bytes.Repeat([]byte("x"), 200)
	relayed := func(p []byte) []byte {
		buf := make([]byte, HeaderRoom+len(p))
		copy(buf[HeaderRoom:], p)
		return RelayText(buf)
	}
	appended := func(p []byte) []byte {
		_, f := AppendText([]byte("before"), func(d []byte) []byte { return append(d, p...) })
		return f
	}
	for _, tc := range []struct {
		name    string
		frame   []byte
		op      ws.OpCode
		payload []byte
	}{
		{"ping", Ping(), ws.OpPing, nil},
		{"pong", Pong([]byte("abc")), ws.OpPong, []byte("abc")},
		{"close", Close(4003, "slow consumer"), ws.OpClose, ws.NewCloseFrameBody(4003, "slow consumer")},
		{"close with a long reason", Close(1000, string(long)), ws.OpClose, ws.NewCloseFrameBody(1000, string(long))},
		{"relayed, short", relayed([]byte("{}")), ws.OpText, []byte("{}")},
		{"relayed, 16-bit length", relayed(long), ws.OpText, long},
		{"relayed, 64-bit length", relayed(bytes.Repeat(long, 400)), ws.OpText, bytes.Repeat(long, 400)},
		{"appended", appended(long), ws.OpText, long},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := readFrame(tc.frame)
			if err != nil {
				t.Fatal(err)
			}
			if !f.Header.Fin || f.Header.Masked || f.Header.OpCode != tc.op || !bytes.Equal(f.Payload, tc.payload) {
				t.Fatalf("read %+v payload %q, want a final unmasked %v frame with %q", f.Header, f.Payload, tc.op, tc.payload)
			}
			if h, err := ParseHeader(tc.frame[:HeaderSize(tc.frame[0], tc.frame[1])]); err != nil || h != f.Header {
				t.Fatalf("ParseHeader = %+v, %v; want %+v", h, err, f.Header)
			}
		})
	}
}

// readFrame reads one whole frame with the library's header reader.
func readFrame(b []byte) (ws.Frame, error) {
	r := bytes.NewReader(b)
	h, err := ws.ReadHeader(r)
	if err != nil {
		return ws.Frame{}, err
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(r, p); err != nil {
		return ws.Frame{}, err
	}
	if r.Len() != 0 {
		return ws.Frame{}, fmt.Errorf("%d bytes after the frame", r.Len())
	}
	if len(p) == 0 {
		p = nil
	}
	return ws.Frame{Header: h, Payload: p}, nil
}
