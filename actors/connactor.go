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
	// flushNow ends a reader's round (Round): write what was gathered.
	flushNow struct{}
)

const (
	batchScratch   = 8 << 10   // room for server-encoded frames in one batch
	maxServerFrame = 1 << 10   // the largest ack, error or pong the writer encodes
	maxBatchFrames = 256       // frames per writev, well under IOV_MAX
	maxBatchBytes  = 256 << 10 // bytes per writev
)

// batch is the frames for one write. Borrowed from a pool while a
// connection has something to write, so idle connections hold none.
type batch struct {
	bufs    [][]byte
	scratch []byte
	next    int   // bufs[:next] are written; bufs[next] may be in part
	msgs    int64 // what the batch counts in the send queue until handed to the socket
	bytes   int64
	close   bool // the last frame is the close frame
}

// advance drops the first n written bytes.
func (b *batch) advance(n int) {
	for n > 0 && b.next < len(b.bufs) {
		f := b.bufs[b.next]
		if n < len(f) {
			b.bufs[b.next] = f[n:]
			return
		}
		n -= len(f)
		b.next++
	}
}

// writable tells a connection actor whose socket was full that it takes
// bytes again (err nil), or will not (err).
type writable struct{ err error }

// connActor owns one socket's write side. Frames arrive through its mailbox,
// which is the connection's send queue; frames already waiting there are
// written together in one system call. It never waits for the socket: when
// the socket is full, what is left waits in the actor (out, then held) and
// the socket tells it through a writable message when to go on, so the
// actor may run on whatever goroutine delivered its message (the inline
// dispatcher). Its fields are its own: only Receive touches them, one
// message at a time. What other goroutines share with it is in conn.
type connActor struct {
	c      *conn // set by the first message, attach
	sys    *System
	b      *batch      // frames still counted in the send queue, gathered for the next write
	out    *batch      // handed to the socket and not all written: the socket is full
	held   []*batch    // gathered while out waits, in order; still counted in the send queue
	expiry *time.Timer // armed only when the token expires within a sweep
	// closeSent: the close is under way here; nothing more is queued and
	// the close frame (if the reason has one) follows what is written.
	closeSent bool
	shut      bool // the close frame is written, or the socket is beyond writing
	broken    bool // a write failed: the stream is no longer framed
	readerOut bool // the reader has stopped
	stopping  bool
	watching  bool // the room, for a peer's close it has to decide
	// roundDue: frames wait in b for a flushNow that a round will send.
	roundDue bool
}

func (a *connActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *inbound, *protocol.Error, *serverFrame, *ctrlFrame:
		a.queue(ctx, m)
	case writable:
		if a.out == nil {
			return // the output was abandoned meanwhile
		}
		if m.err != nil {
			a.writeFailed(ctx, m.err)
			return
		}
		a.write(ctx)
	case flushNow:
		a.roundDue = false
		a.flush(ctx)
	case closeNow:
		a.flush(ctx)
		a.writeClose(ctx)
	case readerDone:
		a.readerOut = true
		switch {
		case !a.c.peerClosed.Load() && a.c.reason.CompareAndSwap(0, uint32(ClosePeerGone)):
			a.flush(ctx)
			a.writeClose(ctx)
		case a.closeSent:
			a.stopIfDone(ctx) // the close is under way: stop once it is written
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
	case barrier:
		// Everything queued before it has been handed to the socket, which
		// for a proxy means queued on its node.
		a.flush(ctx)
		m.done <- m.c
	case armExpiry:
		if a.expiry == nil && a.c.reason.Load() == 0 {
			c := a.c
			// The callback runs on the timer's own goroutine, possibly
			// after the actor has stopped: it touches only c.close, which
			// is safe from anywhere (and a no-op once the end is decided).
			a.expiry = time.AfterFunc(max(time.Duration(c.expires-a.sys.cfg.Now().UnixNano()), 0), func() { c.close(CloseTokenExpired) })
		}
	case attach:
		a.c = m.c
		if a.c.proxy {
			return // logged on its own node
		}
		a.sys.log.Info().Uint64("conn", a.c.id).Str("user", a.c.user).Str("remote", a.c.sock.RemoteAddr()).Msg("connection opened")
	case *actor.Stopping:
		if a.c != nil {
			a.stop(ctx)
		}
	}
}

func (a *connActor) queue(ctx actor.Context, msg any) {
	c := a.c
	n := cost(c, msg)
	if a.closeSent || a.broken {
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
		a.flush(ctx)
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
	// What waits for a round still counts in the send queue: it may hold
	// half the bound, so that a consumer that keeps up is never taken for
	// a slow one.
	cfg := &a.sys.cfg
	if len(b.bufs) >= maxBatchFrames || b.bytes >= maxBatchBytes ||
		2*b.msgs >= int64(cfg.SendQueueMessages) || 2*b.bytes >= cfg.SendQueueBytes {
		a.flush(ctx)
		return
	}
	// The room counts a message before sending it, so a count above what
	// this batch holds means more frames are already on their way: wait for
	// them and write everything at once. So does a round already due.
	if c.queuedMsgs.Load() > b.msgs || a.roundDue {
		return
	}
	// A message read in an open round waits for its end, with whatever
	// else the round brings this connection (its acks, other senders'
	// pushes): one write per connection and round.
	if in, ok := msg.(*inbound); ok && in.c.round != nil && in.c.round.add(c) {
		a.roundDue = true
		return
	}
	a.flush(ctx)
}

// flush hands the gathered frames to the socket, or, while the socket is
// full, puts them behind what already waits.
func (a *connActor) flush(ctx actor.Context) {
	b := a.b
	if b == nil {
		return
	}
	a.b = nil
	switch {
	case len(b.bufs) == 0 || a.closeSent || a.broken:
		a.uncount(b)
		a.recycle(b)
	case a.out != nil:
		a.held = append(a.held, b)
	default:
		a.send(ctx, b)
	}
}

// send hands b to the socket. The batch leaves the queue here, not once
// it is written: the peer may read the frames long before that (loopback,
// a local proxy), and a peer that keeps up must not count as behind. A
// socket that stops taking bytes is caught by the write timeout instead,
// and what queues up behind it meanwhile still counts.
func (a *connActor) send(ctx actor.Context, b *batch) {
	if b.msgs > 0 {
		a.sys.metrics.QueueDepth.Observe(float64(a.c.queuedMsgs.Load()))
	}
	a.uncount(b)
	a.out = b
	a.write(ctx)
}

// uncount takes b out of the send queue's accounting.
func (a *connActor) uncount(b *batch) {
	c := a.c
	c.queuedMsgs.Add(-b.msgs)
	c.queuedBytes.Add(-b.bytes)
	a.sys.metrics.SendQueue.Sub(float64(b.msgs))
	b.msgs, b.bytes = 0, 0
}

func (a *connActor) recycle(b *batch) {
	clear(b.bufs)
	b.bufs, b.scratch, b.next, b.msgs, b.bytes, b.close = b.bufs[:0], b.scratch[:0], 0, 0, 0, false
	a.sys.batches.Put(b)
}

// write writes out, then what is held behind it, as far as the socket
// takes it now. When the socket is full it asks to be told when it takes
// bytes again, and returns.
func (a *connActor) write(ctx actor.Context) {
	c := a.c
	for a.out != nil {
		b := a.out
		n, err := c.sock.Write(b.bufs[b.next:])
		if err != nil {
			a.writeFailed(ctx, err)
			return
		}
		b.advance(n)
		if b.next < len(b.bufs) {
			sys, pid := a.sys, c.pid
			c.sock.Wait(a.closeSent, func(err error) { sys.root.Send(pid, writable{err: err}) })
			return
		}
		frames := len(b.bufs)
		if b.close {
			frames = 0
			a.shut = true
			c.sock.Shut()
		}
		c.msgsOut.Add(int64(frames))
		a.recycle(b)
		a.out = nil
		if len(a.held) > 0 {
			next := a.held[0]
			a.held[0] = nil
			a.held = a.held[1:]
			if len(a.held) == 0 {
				a.held = nil
			}
			if next.msgs > 0 {
				a.sys.metrics.QueueDepth.Observe(float64(c.queuedMsgs.Load()))
			}
			a.uncount(next)
			a.out = next
		}
	}
	if b := a.b; b != nil && len(b.bufs) > 0 && !a.closeSent && !a.broken {
		// Frames gathered while the socket was full waited for the frames
		// counted ahead of them, which were the held ones: all written now.
		a.flush(ctx) // hands them to the socket, and so comes back here
		return
	}
	a.stopIfDone(ctx)
}

// abandon drops every frame not yet written.
func (a *connActor) abandon() {
	if a.out != nil {
		a.recycle(a.out)
		a.out = nil
	}
	for _, b := range a.held {
		a.uncount(b)
		a.recycle(b)
	}
	a.held = nil
}

// writeFailed handles a socket that could not take a write in time or at
// all. The stream may hold part of a frame now, so nothing more is written.
func (a *connActor) writeFailed(ctx actor.Context, err error) {
	a.broken = true
	a.abandon()
	if a.closeSent {
		a.shut = true
	}
	r := ClosePeerGone
	if errors.Is(err, os.ErrDeadlineExceeded) {
		r = CloseSlowConsumer
	}
	if a.c.close(r) && r == CloseSlowConsumer {
		a.sys.metrics.SlowConsumers.Inc()
	}
	_ = a.c.sock.Close() // unblocks the reader
	a.stopIfDone(ctx)
}

// writeClose puts the close frame behind every frame already handed to the
// socket, once; the actor ends when it is written and the reader has
// stopped, so that the socket is released last.
func (a *connActor) writeClose(ctx actor.Context) {
	c := a.c
	if !a.closeSent {
		a.closeSent = true
		r := c.closeReason()
		if !a.broken && r.sendsFrame() {
			b := a.sys.batches.Get().(*batch)
			if f := c.sock.CloseFrame(c.closeCode(), r.Text()); f != nil {
				b.bufs = append(b.bufs, f)
			}
			b.close = true
			if a.out != nil {
				a.held = append(a.held, b)
			} else {
				a.send(ctx, b)
			}
			return // send stops the actor when it is done
		}
		a.abandon()
		a.shut = true
		if !a.readerOut {
			_ = c.sock.Close()
		}
	}
	a.stopIfDone(ctx)
}

// stopIfDone stops the actor once the close is written (or beyond writing)
// and the reader has stopped.
func (a *connActor) stopIfDone(ctx actor.Context) {
	if a.shut && a.readerOut && !a.stopping {
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
	a.stopping = true
	if a.expiry != nil {
		a.expiry.Stop()
	}
	a.flush(ctx)
	if !a.readerOut || !a.shut {
		// Stopped by the supervisor after a failure: a close frame, if
		// the stream is between frames and the socket takes it at once.
		if c.reason.CompareAndSwap(0, uint32(CloseInternal)) && !a.closeSent && !a.broken && a.out == nil {
			if f := c.sock.CloseFrame(CloseInternal.Code(), CloseInternal.Text()); f != nil {
				_, _ = c.sock.Write([][]byte{f})
			}
		}
	}
	a.abandon()
	c.dropQueue()
	if a.watching {
		ctx.Unwatch(c.room) // the room may live on; drop its record of this actor
	}
	_ = c.sock.Close()
	ctx.Send(c.room, &leave{c: c})
	ctx.Send(a.sys.directory, &release{user: c.user, room: c.room, proxy: c.proxy})
	if c.proxy {
		a.sys.conns.Done()
		return // counted and logged on its own node
	}
	r, code := c.closeReason(), c.closeCode()
	a.sys.metrics.closed(r, code)
	a.sys.metrics.Connections.Dec()
	ev := a.sys.log.Info().Uint64("conn", c.id).Str("user", c.user).Str("remote", c.sock.RemoteAddr())
	if id := c.ident.Load(); id != nil {
		ev = ev.Str("clientId", id.clientID).Str("sessionId", id.sessionID)
	}
	ev.Int64("duration_ms", time.Duration(a.sys.cfg.Now().UnixNano()-c.opened).Milliseconds()).Uint16("code", code).Str("reason", r.String()).
		Int64("messages_in", c.msgsIn.Load()).Int64("messages_out", c.msgsOut.Load()).Msg("connection closed")
	a.sys.conns.Done()
}
