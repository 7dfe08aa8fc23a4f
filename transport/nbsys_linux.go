//go:build linux

package transport

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The system calls below never block: reads and writes on non-blocking
// sockets, and epoll_wait with a zero timeout. They are made without
// telling the scheduler that a system call may block (RawSyscall), because
// a thread the runtime's monitor finds in a system call is treated as
// blocked and its processor handed to another thread: at tens of thousands
// of writes a second that hand-off, and the wake-ups it causes, cost a
// large share of the CPU the writes themselves take (PERFORMANCE.md §8).
// The price is that a garbage collection waiting to stop the world waits
// for the call to return, which is microseconds.

// maxIovecs bounds one writev(2), and the scratch space for it on the
// writer's stack (the kernel's IOV_MAX is 1024).
const maxIovecs = 64

func nbRead(fd int, p []byte) (int, error) { return nbIO(unix.SYS_READ, fd, p) }

func nbWrite(fd int, p []byte) (int, error) { return nbIO(unix.SYS_WRITE, fd, p) }

// nbIO is read(2) or write(2) (trap) on p.
func nbIO(trap uintptr, fd int, p []byte) (int, error) {
	var ptr unsafe.Pointer
	if len(p) > 0 {
		ptr = unsafe.Pointer(&p[0])
	}
	n, _, e := unix.RawSyscall(trap, uintptr(fd), uintptr(ptr), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// writeFrames writes a batch with one write(2), or writev(2) for each
// maxIovecs frames, until the socket takes less than it is given.
func writeFrames(fd int, frames [][]byte, iov *[maxIovecs]unix.Iovec) (int, error) {
	if len(frames) == 1 {
		return nbWrite(fd, frames[0])
	}
	total := 0
	for len(frames) > 0 {
		k := min(len(frames), maxIovecs)
		want := 0
		for _, f := range frames[:k] {
			want += len(f)
		}
		n, err := nbWritev(fd, frames[:k], iov)
		total += n
		if err != nil {
			if total > 0 && err == unix.EAGAIN {
				return total, nil // what was written counts; the rest waits
			}
			return total, err
		}
		if n < want {
			return total, nil
		}
		frames = frames[k:]
	}
	return total, nil
}

// nbWritev writes at most maxIovecs frames with one writev(2); iov is
// the caller's scratch space, so that a write allocates nothing.
func nbWritev(fd int, frames [][]byte, iov *[maxIovecs]unix.Iovec) (int, error) {
	k := 0
	for _, f := range frames {
		if k == maxIovecs {
			break
		}
		if len(f) == 0 {
			continue
		}
		iov[k].Base = &f[0]
		iov[k].SetLen(len(f))
		k++
	}
	if k == 0 {
		return 0, nil
	}
	n, _, e := unix.RawSyscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(k))
	for i := range k {
		iov[i].Base = nil // the frames are not kept alive by the scratch space
	}
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// nbEpollWait collects ready events without waiting.
func nbEpollWait(epfd int, events []unix.EpollEvent) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])),
		uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
