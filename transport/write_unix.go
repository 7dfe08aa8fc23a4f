//go:build unix

package transport

import (
	"errors"
	"net"

	"golang.org/x/sys/unix"
)

// rawWrites: sockets are written through their descriptor, never waiting.
const rawWrites = true

// writeRaw writes frames with one write(2) or writev(2) on the
// non-blocking descriptor, and returns what it took. EAGAIN is not an
// error: it is a full socket, and fewer bytes written than given.
func (s *socket) writeRaw(frames [][]byte) (int, error) {
	if !s.use() {
		return 0, net.ErrClosed
	}
	defer s.unuse()
	var iov [maxIovecs]unix.Iovec
	for {
		n, err := writeFrames(s.fd, frames, &iov)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil && !errors.Is(err, unix.EAGAIN) {
			return max(n, 0), err
		}
		return max(n, 0), nil // never wait here: Wait does, on its own goroutine
	}
}
