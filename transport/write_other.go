//go:build !unix

package transport

import "syscall"

// rawWrites is false where the descriptor cannot be written directly:
// sockets write through the connection, waiting as it does.
const rawWrites = false

func writeRaw(syscall.RawConn, [][]byte) (int, error) { panic("no raw writes") }
