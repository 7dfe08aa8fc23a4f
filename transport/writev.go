//go:build linux || darwin

package transport

import "golang.org/x/sys/unix"

func writev(fd int, frames [][]byte) (int, error) { return unix.Writev(fd, frames) }
