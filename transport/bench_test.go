package transport_test

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"testing"

	"github.com/gobwas/ws"

	"github.com/livestore-relay/livestore-relay/test/relaytest"
	"github.com/livestore-relay/livestore-relay/transport"
)

func upgradeRequest(addr, token string) []byte {
	return []byte("GET " + transport.SyncPath + "?token=" + token + " HTTP/1.1\r\n" +
		"Host: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
}

// dialRaw upgrades a plain TCP connection with a prepared request and
// returns it with a reader positioned after the 101 response.
func dialRaw(b *testing.B, addr string, req []byte) (net.Conn, *bufio.Reader) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := c.Write(req); err != nil {
		b.Fatal(err)
	}
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			b.Fatal(err)
		}
		if bytes.HasPrefix(line, []byte("HTTP/1.1 ")) && !bytes.HasPrefix(line, []byte("HTTP/1.1 101")) {
			b.Fatalf("upgrade refused: %s", line)
		}
		if len(line) == 2 {
			return c, br
		}
	}
}

// BenchmarkUpgrade measures accept, handshake with token verification, and
// admission, over loopback. Allocations include the client's few.
func BenchmarkUpgrade(b *testing.B) {
	s := relaytest.Start(b, relaytest.WithLimits(func(c *transport.Config) { c.Actors.MaxConnsPerUser = 1 << 20 }))
	req := upgradeRequest(s.Addr, relaytest.Token(b, "alice"))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		c, _ := dialRaw(b, s.Addr, req)
		c.Close()
	}
}

func maskedText(payload []byte) []byte {
	var buf bytes.Buffer
	f := ws.NewTextFrame(append([]byte(nil), payload...))
	f = ws.MaskFrameInPlace(f)
	if err := ws.WriteFrame(&buf, f); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// BenchmarkPushToPeer measures one push from a device to its peer and the
// ack back, end to end over loopback, one at a time.
func BenchmarkPushToPeer(b *testing.B) {
	s := relaytest.Start(b, relaytest.WithLimits(func(c *transport.Config) { c.Actors.Rate = 1e9; c.Actors.RateBurst = 1 << 30 }))
	req := upgradeRequest(s.Addr, relaytest.Token(b, "alice"))
	a, ar := dialRaw(b, s.Addr, req)
	p, pr := dialRaw(b, s.Addr, req)
	defer a.Close()
	defer p.Close()
	bind := func(c net.Conn, r *bufio.Reader, id string) {
		if _, err := c.Write(maskedText([]byte(`{"type":"pull","clientId":"` + id + `","sessionId":"s","timestamp":1,"payload":{}}`))); err != nil {
			b.Fatal(err)
		}
		skipFrame(b, r)
	}
	bind(a, ar, "a")
	bind(p, pr, "p")
	push := maskedText([]byte(`{"type":"push","clientId":"a","sessionId":"s","timestamp":1733644800000,"payload":{"events":[{"eventName":"todo.created","eventNumber":1,"clientId":"a","sessionId":"s","timestamp":1733644800000,"data":{"id":"3f1c","text":"Buy milk and eggs on the way home","completed":false}}]}}`))
	b.SetBytes(int64(len(push)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := a.Write(push); err != nil {
			b.Fatal(err)
		}
		skipFrame(b, pr) // the push at the peer
		skipFrame(b, ar) // the ack
	}
}

var discard [64 << 10]byte

func skipFrame(b *testing.B, r *bufio.Reader) {
	h, err := ws.ReadHeader(r)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.ReadFull(r, discard[:h.Length]); err != nil {
		b.Fatal(err)
	}
}
