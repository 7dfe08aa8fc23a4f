//go:build darwin

package transport

import "golang.org/x/sys/unix"

const maxIovecs = 64

func writeFrames(fd int, frames [][]byte, _ *[maxIovecs]unix.Iovec) (int, error) {
	if len(frames) == 1 {
		return unix.Write(fd, frames[0])
	}
	return unix.Writev(fd, frames)
}
