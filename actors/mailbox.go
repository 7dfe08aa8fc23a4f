package actors

import (
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
)

// compactMailbox is a protoactor mailbox made for many mostly idle actors
// and for the inline dispatchers: it holds nothing while empty, takes a
// message that finds it empty without allocating (one slot), and runs
// inline without allocating either. Its semantics are protoactor's default
// mailbox's: system messages first, suspension, a yield every throughput
// messages, a panic escalated as the actor's failure.
//
// Its queues are guarded by mu, held only to push or pop one message;
// status says whether a goroutine is running the mailbox (only that one
// pops user messages and invokes the actor).
type compactMailbox struct {
	mu        sync.Mutex
	user      fifo
	system    *fifo        // made by the first system message: most actors get few
	status    atomic.Int32 // mailboxIdle or mailboxRunning
	userN     atomic.Int32 // user messages queued
	sysN      atomic.Int32 // system messages queued
	suspended atomic.Bool
	invoker   actor.MessageInvoker
	dispatch  actor.Dispatcher
	gauge     *depthGauge // nil: not counted
}

const (
	mailboxIdle int32 = iota
	mailboxRunning
)

// compactMailboxes returns the producer of compact mailboxes counted in
// gauge (nil: not counted).
func compactMailboxes(gauge *depthGauge) actor.MailboxProducer {
	return func() actor.Mailbox { return &compactMailbox{gauge: gauge} }
}

// fifo is a queue that holds its first message in a slot and allocates
// only for the ones queued behind it; emptied, it lets its buffer go.
type fifo struct {
	one    any
	hasOne bool
	more   []any // behind one, oldest first
	head   int   // more[:head] are taken
}

func (q *fifo) push(m any) {
	if !q.hasOne && len(q.more) == q.head {
		q.one, q.hasOne = m, true
		return
	}
	q.more = append(q.more, m)
}

func (q *fifo) empty() bool { return !q.hasOne && q.head == len(q.more) }

func (q *fifo) pop() (any, bool) {
	if q.hasOne {
		m := q.one
		q.one, q.hasOne = nil, false
		return m, true
	}
	if q.head == len(q.more) {
		return nil, false
	}
	m := q.more[q.head]
	q.more[q.head] = nil
	q.head++
	if q.head == len(q.more) {
		q.more, q.head = nil, 0
	}
	return m, true
}

func (m *compactMailbox) PostUserMessage(msg any) {
	if m.gauge != nil {
		m.gauge.MessagePosted(msg)
	}
	m.mu.Lock()
	m.user.push(msg)
	m.mu.Unlock()
	m.userN.Add(1)
	m.schedule()
}

func (m *compactMailbox) PostSystemMessage(msg any) {
	if m.gauge != nil {
		m.gauge.MessagePosted(msg)
	}
	m.mu.Lock()
	if m.system == nil {
		m.system = &fifo{}
	}
	m.system.push(msg)
	m.mu.Unlock()
	m.sysN.Add(1)
	m.schedule()
}

// RegisterHandlers takes the Props' dispatcher unless the mailbox was made
// with one of its own (a room's, System.roomProps).
func (m *compactMailbox) RegisterHandlers(invoker actor.MessageInvoker, dispatcher actor.Dispatcher) {
	m.invoker = invoker
	if m.dispatch == nil {
		m.dispatch = dispatcher
	}
}

func (m *compactMailbox) Start() {}

func (m *compactMailbox) UserMessageCount() int { return int(m.userN.Load()) }

// inliner is a dispatcher that may run a mailbox on the caller's goroutine.
type inliner interface{ inline() bool }

func (m *compactMailbox) schedule() {
	if !m.status.CompareAndSwap(mailboxIdle, mailboxRunning) {
		return // the goroutine running the mailbox will take the message
	}
	if d, ok := m.dispatch.(inliner); ok && d.inline() {
		m.process() // called directly: no closure to allocate
		return
	}
	m.dispatch.Schedule(m.process)
}

func (m *compactMailbox) process() {
	for {
		m.run()
		m.status.Store(mailboxIdle)
		// A message posted after the last pop but before the store above
		// found the mailbox running and did not schedule it: take it here.
		if m.sysN.Load() == 0 && (m.suspended.Load() || m.userN.Load() == 0) {
			return
		}
		if !m.status.CompareAndSwap(mailboxIdle, mailboxRunning) {
			return // another goroutine has taken over
		}
	}
}

func (m *compactMailbox) run() {
	var msg any
	defer func() {
		if r := recover(); r != nil {
			m.invoker.EscalateFailure(r, msg)
		}
	}()
	n, t := 0, m.dispatch.Throughput()
	for {
		if n > t {
			n = 0
			runtime.Gosched()
		}
		n++
		var ok bool
		if m.sysN.Load() > 0 {
			m.mu.Lock()
			msg, ok = m.system.pop()
			if m.system.empty() {
				m.system = nil // most of the time an actor has none
			}
			m.mu.Unlock()
		}
		if ok {
			m.sysN.Add(-1)
			if m.gauge != nil {
				m.gauge.MessageReceived(msg)
			}
			switch msg.(type) {
			case *actor.SuspendMailbox:
				m.suspended.Store(true)
			case *actor.ResumeMailbox:
				m.suspended.Store(false)
			default:
				m.invoker.InvokeSystemMessage(msg)
			}
			continue
		}
		if m.suspended.Load() {
			return
		}
		m.mu.Lock()
		msg, ok = m.user.pop()
		m.mu.Unlock()
		if !ok {
			return
		}
		m.userN.Add(-1)
		if m.gauge != nil {
			m.gauge.MessageReceived(msg)
		}
		m.invoker.InvokeUserMessage(msg)
	}
}
