package transport

import (
	"bytes"
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
		if len(in) < 2 || len(in) < headerSize(in[0], in[1]) {
			gerr = io.ErrUnexpectedEOF
		} else {
			got, gerr = parseHeader(in[:headerSize(in[0], in[1])])
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
