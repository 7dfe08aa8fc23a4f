package actors

import "sync"

// Round lets a reader that serves many sockets in rounds (the epoll
// reactor) have each connection written once per round: a connection
// actor that gathers frames from messages read in an open round leaves
// them in its batch and is told to write them when the round ends, so
// the frames, and the acks, a round produces for one socket go out in one
// writev. The connection actor stays the only writer of its socket; the
// round only sends it a message.
//
// The reader owns Begin and End; connection actors, on whatever goroutine
// they run, call add. mu guards open and dirty between them.
type Round struct {
	mu    sync.Mutex
	open  bool
	dirty []*conn
	spare []*conn // the other half of dirty, reused by End
}

// Begin opens a round: frames from what is read until End may wait for it.
func (r *Round) Begin() {
	r.mu.Lock()
	r.open = true
	r.mu.Unlock()
}

// End closes the round and tells every connection actor that left frames
// waiting for it to write them. With inline dispatch they run here, on the
// reader's goroutine.
func (r *Round) End() {
	r.mu.Lock()
	r.open = false
	dirty := r.dirty
	r.dirty = r.spare[:0]
	r.mu.Unlock()
	for i, c := range dirty {
		dirty[i] = nil
		if c.queuedMsgs.Load() >= 0 { // not stopped
			c.post(flushNow{})
		}
	}
	r.mu.Lock()
	r.spare = dirty[:0]
	r.mu.Unlock()
}

// add records that c waits for the end of the round, and reports false
// when no round is open (then c must write now).
func (r *Round) add(c *conn) bool {
	r.mu.Lock()
	ok := r.open
	if ok {
		r.dirty = append(r.dirty, c)
	}
	r.mu.Unlock()
	return ok
}

// SetRound makes the frames read through s wait for the end of r's rounds
// before their recipients write them. Called before the first frame is
// read, by the reader that owns r.
func (s *Session) SetRound(r *Round) { s.c.round = r }
