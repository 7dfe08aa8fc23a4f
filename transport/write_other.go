//go:build !unix

package transport

// rawWrites is false where the descriptor cannot be written directly:
// sockets write through the connection, waiting as it does.
const rawWrites = false

func (s *socket) writeRaw([][]byte) (int, error) { panic("no raw writes") }
