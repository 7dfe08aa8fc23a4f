package actors

import (
	"math"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/livestore-relay/livestore-relay/transport/wsframe"
)

// Socket is the write side of one WebSocket connection. It never blocks:
// a full socket says so, and says later when it takes bytes again.
//
// Write, Wait, CloseFrame, Shut and RemoteAddr are called only by the connection's
// actor, one call at a time, so they need no locking. Close may be called
// from any goroutine, concurrently with the others and more than once: by
// the actor, by a room aborting its connections at shutdown, and by the
// server when the connection cannot be handed to its reader.
type Socket interface {
	// Write writes complete frames in order, as many bytes of them as the
	// socket takes without waiting, in as few system calls as it can, and
	// returns how many bytes it wrote. Fewer than the frames hold, with a
	// nil error, means the socket is full: Wait tells when to go on.
	Write(frames [][]byte) (int, error)
	// Wait calls ready once, from a goroutine of its own, when the socket
	// takes bytes again (nil), or with an error: os.ErrDeadlineExceeded
	// when it took none for the write timeout (shorter when closing is
	// set), another when it was closed.
	Wait(closing bool, ready func(error))
	// CloseFrame is what to write behind every other frame to close the
	// connection with code and reason: a WebSocket close frame, or nil
	// for a socket that closes by itself in Shut.
	CloseFrame(code uint16, reason string) []byte
	// Shut follows the written close frame: it half-closes the stream so
	// the peer reads every frame and then the end of the stream, and
	// gives the reader a short grace period to see the peer's reply.
	Shut()
	// Close releases the socket. It unblocks the reader. Safe from any
	// goroutine.
	Close() error
	// RemoteAddr is the peer's address, for logs. Asked for rather than kept,
	// so that an idle connection holds no copy of it.
	RemoteAddr() string
}

// conn is one connection as the room, the reader (Session), timers and
// the connection actor see it: the state they share, and the methods that
// are safe from any of their goroutines. The actor's own state is in
// connActor (connactor.go).
type conn struct {
	// Static after construction.
	id   uint64
	user string
	room *actor.PID
	// roomDisp is the room's dispatcher when rooms run inline: a
	// reader marks it before sending a message that makes the room wait.
	roomDisp *roomDispatcher
	pid      *actor.PID // set before the actor can receive anything addressed by others
	// proc and roomProc are the processes behind pid and room, set with
	// them (nil: send through the PID). The hot paths post to them
	// directly: a send through a PID resolves it through a cached pointer
	// to an interface, a chain of dependent loads (cache misses, with
	// thousands of connections) on every delivery.
	proc     *actor.ActorProcess
	roomProc *actor.ActorProcess
	sock     Socket
	sys      *System
	expires  int64 // unix nanoseconds of the token's expiry; 0: none
	opened   int64 // unix nanoseconds
	// round is the reader's, when it reads in rounds (Round): frames read
	// from this connection wait for the end of the round to be written.
	// Set before the first frame is read.
	round *Round
	// proxy marks a connection whose socket is on another node of the
	// cluster (cluster.go): its room is here, its reader and liveness there.
	proxy bool
	// peer is the room's entry for the connection, from its join to its
	// leave: read and written by the room actor only.
	peer *peer

	// Send-queue accounting: enqueuers add, the actor subtracts as it hands
	// a batch to the socket.
	queuedMsgs  atomic.Int64
	queuedBytes atomic.Int64

	// reason is the first close reason decided for the connection; once set,
	// nothing more is queued and the actor writes the close frame.
	reason   atomic.Uint32
	peerCode atomic.Uint32 // the code of a peer-initiated close
	// peerClosed is set by the reader when it reads the peer's close frame;
	// the room then decides the close (ClosePeer) once it has handled
	// everything read before it.
	peerClosed atomic.Bool
	lastRead   atomic.Int64 // unix nanoseconds of the last frame read
	ident      atomic.Pointer[identity]

	msgsIn  atomic.Int64 // messages read, for the close log line
	msgsOut atomic.Int64 // frames written, for the close log line
}

const ackCost = 128 // bytes an ack is counted as before it is encoded

// cost is what a queued message counts against the recipient's byte bound.
func cost(to *conn, msg any) int64 {
	switch m := msg.(type) {
	case *inbound:
		if m.c == to {
			return ackCost
		}
		return int64(len(m.frame))
	case *serverFrame:
		return int64(len(m.b))
	case *ctrlFrame:
		return int64(len(m.b))
	}
	return ackCost // errors
}

// enqueue puts msg on c's send queue without ever blocking. Over the bound
// it closes c as a slow consumer and reports false. It runs on readers (a
// pong), rooms (fan-out, answers, pings) and the connection's own actor,
// concurrently: the queue counters are atomic, and the send goes through
// the actor's mailbox. A message, once enqueued, is read-only.
func (c *conn) enqueue(msg any) bool {
	if c.reason.Load() != 0 {
		return false
	}
	n := cost(c, msg)
	msgs := c.queuedMsgs.Add(1)
	if msgs <= 0 {
		c.queuedMsgs.Add(-1) // the actor has stopped; nobody would write it
		return false
	}
	// Counted in the gauge with the counter: if the actor stops from here
	// on, its stop subtracts this message with the rest.
	c.sys.metrics.SendQueue.Inc()
	bytes := c.queuedBytes.Add(n)
	if msgs > int64(c.sys.cfg.SendQueueMessages) || bytes > c.sys.cfg.SendQueueBytes {
		c.queuedBytes.Add(-n)
		if c.queuedMsgs.Add(-1) >= 0 {
			c.sys.metrics.SendQueue.Dec() // else the stop has subtracted it
		}
		if c.close(CloseSlowConsumer) {
			c.sys.metrics.SlowConsumers.Inc()
		}
		return false
	}
	c.post(msg)
	return true
}

// post sends msg to c's actor, from any goroutine.
func (c *conn) post(msg any) {
	if c.proc != nil {
		c.proc.SendUserMessage(c.pid, msg)
		return
	}
	c.sys.root.Send(c.pid, msg)
}

// toRoom sends msg to c's room.
func (c *conn) toRoom(msg any) {
	if c.roomProc != nil {
		c.roomProc.SendUserMessage(c.room, msg)
		return
	}
	c.sys.root.Send(c.room, msg)
}

// stoppedQueue marks the message counter of a connection whose actor has
// stopped: far enough below zero that no number of concurrent enqueuers
// brings it back above.
const stoppedQueue = math.MinInt64 / 2

// dropQueue ends the send-queue accounting of a stopped connection. The
// messages still counted will never be written (protoactor discards a
// stopped actor's mailbox, and enqueuers may still be about to send), so
// they leave the gauge here, each exactly once: an enqueuer that counts a
// message later sees the mark and takes it back itself.
func (c *conn) dropQueue() {
	left := c.queuedMsgs.Swap(stoppedQueue)
	c.queuedBytes.Store(0)
	c.sys.metrics.SendQueue.Sub(float64(left))
}

// close decides the connection's end. Only the first reason counts; it
// reports whether this call was the one that decided. It runs on readers
// (a protocol violation), rooms (replacement, liveness, a peer's close,
// draining, failure), timers (token expiry) and the connection's own
// actor, concurrently: the reason is a compare-and-swap, and the actor
// acts on it from its mailbox.
func (c *conn) close(r CloseReason) bool {
	if !c.reason.CompareAndSwap(0, uint32(r)) {
		return false
	}
	c.post(closeNow{})
	return true
}

func (c *conn) closeReason() CloseReason { return CloseReason(c.reason.Load()) }

// closeCode is the code the connection is closed with: its reason's, or
// the peer's own echoed.
func (c *conn) closeCode() uint16 {
	if r := c.closeReason(); r != ClosePeer {
		return r.Code()
	}
	return wsframe.EchoCode(uint16(c.peerCode.Load()))
}
