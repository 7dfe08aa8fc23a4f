// Package heads keeps the head of every sequenced store: per user and
// store, the number and ids of the last accepted event. It stores no
// events.
//
// One Keeper serves the whole process. Its goroutine is the only owner of
// the heads: rooms come and go, but the heads they change live here, so a
// user's heads outlive the user's room, and a room that is starting can
// never read a head that a room still stopping is about to change. Every
// change is a compare-and-set made by that goroutine, in the order the
// requests arrive.
//
// With a state directory the keeper also writes each change to a bbolt
// file and answers only once the change is committed. Requests that arrive
// while a commit is in progress are taken together into the next
// transaction (group commit), so many rooms share one disk sync.
package heads

import (
	"fmt"
	"maps"
	"time"

	"github.com/rs/zerolog"

	"github.com/livestore-relay/livestore-relay/protocol"
)

// Kind is what an Op asks.
type Kind uint8

const (
	// Join runs the join table for Announced.
	Join Kind = iota + 1
	// Append moves the head to Next when its eventNumber equals Parent.
	Append
	// Read returns the head.
	Read
	// List returns every head of User in All (Result Unchanged), for a
	// room that moves to another node of a cluster.
	List
)

// Result is what became of an Op.
type Result uint8

const (
	// Created: the store had no head; it now has the announced one.
	Created Result = iota + 1
	// Adopted: the relay's head was below the announced one and was raised.
	Adopted
	// Unchanged: the join left the head as it was.
	Unchanged
	// Conflict: same eventNumber, other ids; the head is unchanged.
	Conflict
	// LimitExceeded: the user already has the most stores allowed.
	LimitExceeded
	// Accepted: the append moved the head.
	Accepted
	// Mismatch: the append's parent is not the head; nothing changed.
	Mismatch
	// Unknown: a read of a store without a head.
	Unknown
	// Failed: the change could not be made durable, or the keeper is
	// closed; nothing changed.
	Failed
)

// Op is one request to the keeper. A caller keeps one Op and reuses it:
// Do blocks until the keeper has answered, so an Op is never in flight
// twice.
type Op struct {
	Kind      Kind
	User      string
	Store     string
	Announced protocol.Head // Join
	Parent    int64         // Append
	Next      protocol.Head // Append

	// Set by the keeper.
	Result Result
	Head   protocol.Head            // the head after the op (the relay's, on Conflict and Mismatch)
	All    map[string]protocol.Head // List: store -> head, a copy

	done chan struct{}
}

// DefaultMaxStoresPerUser is Config.MaxStoresPerUser when left zero.
const DefaultMaxStoresPerUser = 256

// Config tunes a Keeper.
type Config struct {
	// Dir holds the state file; empty keeps heads in memory only.
	Dir string
	// MaxStoresPerUser bounds the stores with a head per user; 0 is
	// DefaultMaxStoresPerUser.
	MaxStoresPerUser int
	// ObserveWrite, when set, is told how long each commit took.
	ObserveWrite func(time.Duration)
	// Logger reports failed commits.
	Logger zerolog.Logger
}

// maxBatch bounds the ops taken into one transaction, so that one commit's
// latency stays bounded under a flood.
const maxBatch = 1024

// Keeper owns the heads. Create it with Open; Close it last.
type Keeper struct {
	cfg   Config
	in    chan *Op
	quit  chan struct{}
	done  chan struct{}
	db    *boltStore                          // nil without a state directory
	heads map[string]map[string]protocol.Head // user -> store -> head; owned by run
	// restored is set by Open and never changed.
	restored int
}

// Open starts a keeper, reading back the heads kept in cfg.Dir if set.
func Open(cfg Config) (*Keeper, error) {
	if cfg.MaxStoresPerUser <= 0 {
		cfg.MaxStoresPerUser = DefaultMaxStoresPerUser
	}
	k := &Keeper{
		cfg:   cfg,
		in:    make(chan *Op, maxBatch),
		quit:  make(chan struct{}),
		done:  make(chan struct{}),
		heads: make(map[string]map[string]protocol.Head),
	}
	if cfg.Dir != "" {
		db, err := openBolt(cfg.Dir)
		if err != nil {
			return nil, err
		}
		if err := db.load(func(user, store string, h protocol.Head) {
			k.userHeads(user)[store] = h
			k.restored++
		}); err != nil {
			_ = db.close()
			return nil, fmt.Errorf("heads: read %s: %w", db.path, err)
		}
		k.db = db
	}
	go k.run()
	return k, nil
}

// Durable reports whether heads are written to a state directory.
func (k *Keeper) Durable() bool { return k.db != nil }

// Restored returns how many heads Open read back from the state
// directory.
func (k *Keeper) Restored() int { return k.restored }

// Do hands op to the keeper and waits for its answer. It is safe for
// concurrent use with distinct Ops.
func (k *Keeper) Do(op *Op) {
	if op.done == nil {
		op.done = make(chan struct{}, 1)
	}
	op.Result, op.Head, op.All = 0, protocol.Head{}, nil
	select {
	case k.in <- op:
	case <-k.quit:
		op.Result = Failed
		return
	}
	select {
	case <-op.done:
	case <-k.done:
		// The keeper answers every op it took before it ends.
		select {
		case <-op.done:
		default:
			op.Result = Failed
		}
	}
}

// Close stops the keeper once the batch in hand is answered, and closes
// the state file. Ops still queued, and ops after Close, fail. Close is
// called once, after everything that calls Do has stopped or will give up.
func (k *Keeper) Close() error {
	select {
	case <-k.quit:
		return nil
	default:
	}
	close(k.quit)
	<-k.done
	if k.db != nil {
		return k.db.close()
	}
	return nil
}

// change is a head an op set, with what it replaced, so that a failed
// commit can be undone.
type change struct {
	user, store string
	prev        protocol.Head
	existed     bool
	next        protocol.Head
}

func (k *Keeper) run() {
	defer close(k.done)
	batch := make([]*Op, 0, maxBatch)
	var changes []change
	for {
		select {
		case op := <-k.in:
			batch = append(batch[:0], op)
		case <-k.quit:
			return
		}
	fill:
		for len(batch) < maxBatch {
			select {
			case op := <-k.in:
				batch = append(batch, op)
			default:
				break fill
			}
		}
		changes = changes[:0]
		for _, op := range batch {
			changes = k.apply(op, changes)
		}
		if k.db != nil && len(changes) > 0 {
			start := time.Now()
			err := k.db.write(changes)
			if k.cfg.ObserveWrite != nil {
				k.cfg.ObserveWrite(time.Since(start))
			}
			if err != nil {
				k.cfg.Logger.Error().Err(err).Int("heads", len(changes)).
					Msg("store heads could not be committed; their pushes and joins were refused")
				k.undo(changes)
				for _, op := range batch {
					op.Result, op.Head = Failed, protocol.Head{}
				}
			}
		}
		for _, op := range batch {
			op.done <- struct{}{}
		}
		clear(batch)
	}
}

func (k *Keeper) userHeads(user string) map[string]protocol.Head {
	s := k.heads[user]
	if s == nil {
		s = make(map[string]protocol.Head)
		k.heads[user] = s
	}
	return s
}

// apply answers op against the heads as they stand, appending the change
// it makes, if any.
func (k *Keeper) apply(op *Op, changes []change) []change {
	stores := k.heads[op.User]
	cur, known := stores[op.Store]
	set := func(r Result, h protocol.Head) []change {
		if stores == nil {
			stores = k.userHeads(op.User)
		}
		stores[op.Store] = h
		op.Result, op.Head = r, h
		return append(changes, change{user: op.User, store: op.Store, prev: cur, existed: known, next: h})
	}
	switch op.Kind {
	case Join:
		a := normal(op.Announced)
		switch {
		case !known && len(stores) >= k.cfg.MaxStoresPerUser:
			op.Result = LimitExceeded
		case !known:
			return set(Created, a)
		case cur.EventNumber < a.EventNumber:
			return set(Adopted, a)
		case cur.EventNumber == a.EventNumber && cur != a:
			op.Result, op.Head = Conflict, cur
		default:
			op.Result, op.Head = Unchanged, cur
		}
	case Append:
		switch {
		case !known || cur.EventNumber != op.Parent:
			op.Result, op.Head = Mismatch, cur
		default:
			return set(Accepted, op.Next)
		}
	case Read:
		op.Result, op.Head = Unknown, cur
		if known {
			op.Result = Unchanged
		}
	case List:
		op.Result, op.All = Unchanged, maps.Clone(stores)
	}
	return changes
}

// undo restores the heads a failed commit would have changed.
func (k *Keeper) undo(changes []change) {
	for i := len(changes) - 1; i >= 0; i-- {
		c := changes[i]
		stores := k.heads[c.user]
		if c.existed {
			stores[c.store] = c.prev
			continue
		}
		delete(stores, c.store)
		if len(stores) == 0 {
			delete(k.heads, c.user)
		}
	}
}

// normal drops the ids of an empty store's head, which carry no meaning.
func normal(h protocol.Head) protocol.Head {
	if h.EventNumber == 0 {
		return protocol.Head{}
	}
	return h
}
