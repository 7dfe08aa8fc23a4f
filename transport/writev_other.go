//go:build unix && !linux && !darwin

package transport

import "golang.org/x/sys/unix"

const maxIovecs = 64

// writeFrames writes the frames one write(2) at a time where x/sys has no
// writev, stopping at the first the socket does not take whole.
func writeFrames(fd int, frames [][]byte, _ *[maxIovecs]unix.Iovec) (int, error) {
	total := 0
	for _, f := range frames {
		n, err := unix.Write(fd, f)
		total += max(n, 0)
		if err != nil {
			if total > 0 && (err == unix.EAGAIN || err == unix.EINTR) {
				return total, nil // what was written counts; the rest is retried later
			}
			return total, err
		}
		if n < len(f) {
			break
		}
	}
	return total, nil
}
