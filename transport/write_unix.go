//go:build unix

package transport

import (
	"errors"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// rawWrites: sockets are written through their descriptor, never waiting.
const rawWrites = true

// rawWriter carries one write into the callback that runs on the
// descriptor; pooled so that a write allocates nothing.
type rawWriter struct {
	frames [][]byte
	n      int
	err    error
	fn     func(fd uintptr) bool
	iov    [maxIovecs]unix.Iovec
}

var rawWriters = sync.Pool{New: func() any {
	w := &rawWriter{}
	w.fn = w.write
	return w
}}

// writeRaw writes frames with one write(2) or writev(2) on the
// non-blocking descriptor, and returns what it took. EAGAIN is not an
// error: it is a full socket, and fewer bytes written than given.
func writeRaw(rc syscall.RawConn, frames [][]byte) (int, error) {
	w := rawWriters.Get().(*rawWriter)
	w.frames = frames
	err := rc.Write(w.fn)
	n, werr := w.n, w.err
	w.frames, w.err = nil, nil
	rawWriters.Put(w)
	if err != nil {
		return 0, err // closed, or past the deadline of a close
	}
	return n, werr
}

func (w *rawWriter) write(fd uintptr) bool {
	for {
		n, err := writeFrames(int(fd), w.frames, &w.iov)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		w.n = max(n, 0)
		if err != nil && !errors.Is(err, unix.EAGAIN) {
			w.err = err
		}
		return true // never wait here: Wait does, on its own goroutine
	}
}
