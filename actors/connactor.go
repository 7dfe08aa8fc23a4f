package actors

import (
	"errors"
	"os"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/livestore-relay/livestore-relay/protocol"
	"github.com/livestore-relay/livestore-relay/transport/wsframe"
)

// Messages for the connection actor. Queued items (*inbound,
// *protocol.Error, *serverFrame, *ctrlFrame) come through conn.enqueue and
// are counted against the send-queue bound; the others are control
// messages, sent directly and not counted.
type (
	// serverFrame is a complete frame made by the room (pull_response,
	// the server's own peer_pull_response).
	serverFrame struct {
		b    []byte
		kind outKind
	}
	closeNow   struct{}
	readerDone struct{}
	ctrlFrame  struct{ b []byte } // a ping or a pong
	// attach is a connection actor's first message: the actors share one
	// Props, so the connection is handed over this way.
	attach struct{ c *conn }
	// armExpiry asks for a timer at the token's expiry, which is near.
	armExpiry struct{}
	// watchRoom asks the actor to watch its room: a peer's close waits on it.
	watchRoom struct{}
)

const (
	batchScratch   = 8 << 10   // room for server-encoded frames in one batch
	maxServerFrame = 1 << 10   // the largest ack, error or pong the writer encodes
	maxBatchFrames = 256       // frames per writev, well under IOV_MAX
	maxBatchBytes  = 256 << 10 // bytes per writev
)

// batch is the frames waiting for one write. Borrowed from a pool while a
// connection has something to write, so idle connections hold none.
type batch struct {
	bufs    [][]byte
	scratch []byte
	msgs    int64
	bytes   int64
}

// connActor owns one socket's write side. Frames arrive through its mailbox,
// which is the connection's send queue; frames already waiting there are
// written together in one system call. Its fields are its own: only
// Receive, on the actor's goroutine, touches them. What other goroutines
// share with it is in conn.
type connActor struct {
	c         *conn // set by the first message, attach
	sys       *System
	b         *batch
	expiry    *time.Timer // armed only when the token expires within a sweep
	closeSent bool        // a close frame was written, or the socket is beyond writing
	broken    bool        // a write failed: the stream is no longer framed
	readerOut bool        // the reader has stopped
	stopping  bool
	watching  bool // the room, for a peer's close it has to decide
}

func (a *connActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *inbound, *protocol.Error, *serverFrame, *ctrlFrame:
		a.queue(m)
	case closeNow:
		a.flush()
		a.writeClose(ctx)
	case readerDone:
		a.readerOut = true
		switch {
		case !a.c.peerClosed.Load() && a.c.reason.CompareAndSwap(0, uint32(ClosePeerGone)):
			a.flush()
			a.writeClose(ctx)
		case a.closeSent:
			a.writeClose(ctx) // the close is written: only stop
		}
		// Otherwise the close is decided elsewhere (the room, for a peer's
		// close frame) and its closeNow comes behind every frame queued
		// before the decision: writing the close now would lose them.
	case watchRoom:
		// The room decides a peer's close, but a room that is gone never
		// would (one that failed before this connection's join reached it):
		// watching it tells.
		if !a.watching {
			a.watching = true
			ctx.Watch(a.c.room)
		}
	case *actor.Terminated:
		// The room is gone: it closed its connections as it failed, unless
		// this one had not joined it yet.
		a.c.close(CloseInternal)
	case armExpiry:
		if a.expiry == nil && a.c.reason.Load() == 0 {
			c := a.c
			// The callback runs on the timer's own goroutine, possibly
			// after the actor has stopped: it touches only c.close, which
			// is safe from anywhere (and a no-op once the end is decided).
			a.expiry = time.AfterFunc(max(c.expires.Sub(a.sys.cfg.Now()), 0), func() { c.close(CloseTokenExpired) })
		}
	case attach:
		a.c = m.c
		a.sys.log.Info().Uint64("conn", a.c.id).Str("user", a.c.user).Str("remote", a.c.sock.RemoteAddr()).Msg("connection opened")
	case *actor.Stopping:
		if a.c != nil {
			a.stop(ctx)
		}
	}
}

func (a *connActor) queue(msg any) {
	c := a.c
	n := cost(c, msg)
	if a.closeSent {
		c.queuedMsgs.Add(-1)
		c.queuedBytes.Add(-n)
		a.sys.metrics.SendQueue.Dec()
		return
	}
	if a.b == nil {
		a.b = a.sys.batches.Get().(*batch)
	}
	b := a.b
	if cap(b.scratch)-len(b.scratch) < maxServerFrame {
		a.flush()
		a.b = a.sys.batches.Get().(*batch)
		b = a.b
	}
	var f []byte
	var kind outKind
	switch m := msg.(type) {
	case *inbound:
		if m.c == c {
			kind = outAck
			now := a.sys.now()
			b.scratch, f = wsframe.AppendText(b.scratch, func(d []byte) []byte {
				if m.storeID() != "" {
					return protocol.AppendStoreAck(d, now, m.events, m.lastTs, m.storeID(), m.store.head)
				}
				return protocol.AppendAck(d, now, m.events, m.lastTs)
			})
		} else {
			kind, f = relayKind(m.typ), m.frame
		}
	case *protocol.Error:
		kind = outError
		now := a.sys.now()
		b.scratch, f = wsframe.AppendText(b.scratch, func(d []byte) []byte {
			return protocol.AppendError(d, now, m.Code, m.Message)
		})
	case *serverFrame:
		kind, f = m.kind, m.b
	case *ctrlFrame:
		kind, f = outControl, m.b
	}
	a.sys.metrics.out[kind].Inc()
	a.sys.metrics.outBytes[kind].Add(float64(len(f)))
	b.bufs = append(b.bufs, f)
	b.msgs++
	b.bytes += n
	// The room counts a message before sending it, so a count above what
	// this batch holds means more frames are already on their way: wait for
	// them and write everything at once.
	if c.queuedMsgs.Load() <= b.msgs || len(b.bufs) >= maxBatchFrames || b.bytes >= maxBatchBytes {
		a.flush()
	}
}

func (a *connActor) flush() {
	b := a.b
	if b == nil {
		return
	}
	a.b = nil
	c := a.c
	write := len(b.bufs) > 0 && !a.closeSent
	if write {
		a.sys.metrics.QueueDepth.Observe(float64(c.queuedMsgs.Load()))
	}
	// The batch leaves the queue as it is handed to the socket, not when
	// the write returns: the peer may read the frames long before that
	// (loopback, a local proxy), and a peer that keeps up must not count as
	// behind. A socket that stops taking bytes is caught by the write
	// deadline instead.
	c.queuedMsgs.Add(-b.msgs)
	c.queuedBytes.Add(-b.bytes)
	a.sys.metrics.SendQueue.Sub(float64(b.msgs))
	if write {
		frames := len(b.bufs)
		if err := c.sock.WriteFrames(b.bufs); err != nil {
			a.writeFailed(err)
		} else {
			c.msgsOut.Add(int64(frames))
		}
	}
	clear(b.bufs)
	b.bufs, b.scratch, b.msgs, b.bytes = b.bufs[:0], b.scratch[:0], 0, 0
	a.sys.batches.Put(b)
}

// writeFailed handles a socket that could not take a write in time or at
// all. The stream may hold part of a frame now, so nothing more is written.
func (a *connActor) writeFailed(err error) {
	a.broken = true
	r := ClosePeerGone
	if errors.Is(err, os.ErrDeadlineExceeded) {
		r = CloseSlowConsumer
	}
	if a.c.close(r) && r == CloseSlowConsumer {
		a.sys.metrics.SlowConsumers.Inc()
	}
	_ = a.c.sock.Close() // unblocks the reader
}

// writeClose sends the close frame once, then waits for the reader to stop
// before the socket is released and the actor ends.
func (a *connActor) writeClose(ctx actor.Context) {
	c := a.c
	if !a.closeSent {
		a.closeSent = true
		r := c.closeReason()
		if !a.broken && r.sendsFrame() {
			if err := c.sock.WriteClose(c.closeCode(), r.Text()); err != nil {
				a.broken = true
				_ = c.sock.Close()
			}
		} else if !a.readerOut {
			_ = c.sock.Close()
		}
	}
	if a.readerOut && !a.stopping {
		a.stopping = true
		ctx.Stop(ctx.Self())
	}
}

func relayKind(t protocol.Type) outKind {
	switch t {
	case protocol.TypePeerPull:
		return outPeerPull
	case protocol.TypePeerPullResponse:
		return outPeerPullResponse
	}
	return outPush
}

func (a *connActor) stop(ctx actor.Context) {
	c := a.c
	if a.expiry != nil {
		a.expiry.Stop()
	}
	if a.b != nil {
		a.flush()
	}
	c.dropQueue()
	if a.watching {
		ctx.Unwatch(c.room) // the room may live on; drop its record of this actor
	}
	if !a.readerOut || !a.closeSent {
		// Stopped by the supervisor after a failure.
		if c.reason.CompareAndSwap(0, uint32(CloseInternal)) && !a.closeSent && !a.broken {
			_ = c.sock.WriteClose(CloseInternal.Code(), CloseInternal.Text())
		}
	}
	_ = c.sock.Close()
	ctx.Send(c.room, &leave{c: c})
	ctx.Send(a.sys.directory, &release{user: c.user, room: c.room})
	r, code := c.closeReason(), c.closeCode()
	a.sys.metrics.closed(r, code)
	a.sys.metrics.Connections.Dec()
	ev := a.sys.log.Info().Uint64("conn", c.id).Str("user", c.user).Str("remote", c.sock.RemoteAddr())
	if id := c.ident.Load(); id != nil {
		ev = ev.Str("clientId", id.clientID).Str("sessionId", id.sessionID)
	}
	ev.Int64("duration_ms", a.sys.cfg.Now().Sub(c.opened).Milliseconds()).Uint16("code", code).Str("reason", r.String()).
		Int64("messages_in", c.msgsIn.Load()).Int64("messages_out", c.msgsOut.Load()).Msg("connection closed")
	a.sys.conns.Done()
}
