package actors

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/livestore-relay/livestore-relay/actors/heads"
	"github.com/livestore-relay/livestore-relay/protocol"
)

// etcdHeads keeps store heads in etcd, for a cluster whose members come
// from etcd. Each change is a transaction that compares the key's revision
// with the one the change was decided on, so two nodes that both believe
// they hold a user's room (while their member lists disagree) can never
// both move a head from the same parent: the second is answered with the
// head the first set. An ack is sent once etcd has committed the head.
//
// Do runs on the calling room's goroutine; rooms call it concurrently.
type etcdHeads struct {
	client   *clientv3.Client
	prefix   string // <base>/<cluster>/
	maxUser  int
	timeout  time.Duration
	mu       sync.Mutex
	revision map[string]cachedHead // key -> last seen; guarded by mu
}

type cachedHead struct {
	rev  int64
	head protocol.Head
}

// etcdHeadsBase is where heads live in etcd, under the cluster's name.
const etcdHeadsBase = "/livestore-relay/heads"

func newEtcdHeads(endpoints []string, cluster string, maxStoresPerUser int) (*etcdHeads, error) {
	c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, fmt.Errorf("etcd heads: %w", err)
	}
	if maxStoresPerUser <= 0 {
		maxStoresPerUser = heads.DefaultMaxStoresPerUser
	}
	return &etcdHeads{client: c, prefix: etcdHeadsBase + "/" + esc(cluster) + "/", maxUser: maxStoresPerUser,
		timeout: 5 * time.Second, revision: make(map[string]cachedHead)}, nil
}

// esc makes a user or store id one path segment.
func esc(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func (e *etcdHeads) userPrefix(user string) string { return e.prefix + esc(user) + "/" }

type headJSON struct {
	N int64  `json:"n"`
	C string `json:"c,omitempty"`
	S string `json:"s,omitempty"`
}

func encodeHead(h protocol.Head) string {
	b, _ := json.Marshal(headJSON{h.EventNumber, h.ClientID, h.SessionID})
	return string(b)
}

func decodeHead(b []byte) (protocol.Head, error) {
	var j headJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return protocol.Head{}, err
	}
	return protocol.Head{EventNumber: j.N, ClientID: j.C, SessionID: j.S}, nil
}

// Do answers op as the keeper would, against the heads in etcd.
func (e *etcdHeads) Do(op *heads.Op) {
	op.Result, op.Head, op.All = 0, protocol.Head{}, nil
	ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
	defer cancel()
	if err := e.do(ctx, op); err != nil {
		op.Result, op.Head = heads.Failed, protocol.Head{}
	}
}

func (e *etcdHeads) do(ctx context.Context, op *heads.Op) error {
	if op.Kind == heads.List {
		resp, err := e.client.Get(ctx, e.userPrefix(op.User), clientv3.WithPrefix())
		if err != nil {
			return err
		}
		op.All = make(map[string]protocol.Head, len(resp.Kvs))
		for _, kv := range resp.Kvs {
			store, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(string(kv.Key), e.userPrefix(op.User)))
			if h, err2 := decodeHead(kv.Value); err == nil && err2 == nil {
				op.All[string(store)] = h
			}
		}
		op.Result = heads.Unchanged
		return nil
	}
	key := e.userPrefix(op.User) + esc(op.Store)
	cur, rev, err := e.read(ctx, key, false)
	if err != nil {
		return err
	}
	for range 8 { // retried when another node changed the head in between
		var next protocol.Head
		var result heads.Result
		switch op.Kind {
		case heads.Read:
			op.Result, op.Head = heads.Unknown, cur
			if rev != 0 {
				op.Result = heads.Unchanged
			}
			return nil
		case heads.Append:
			if rev == 0 || cur.EventNumber != op.Parent {
				// Perhaps only this node's copy is stale: read etcd's.
				if cur2, rev2, err := e.read(ctx, key, true); err != nil {
					return err
				} else if rev2 != rev {
					cur, rev = cur2, rev2
					continue
				}
				op.Result, op.Head = heads.Mismatch, cur
				return nil
			}
			next, result = op.Next, heads.Accepted
		case heads.Join:
			a := op.Announced
			if a.EventNumber == 0 {
				a = protocol.Head{}
			}
			switch {
			case rev == 0:
				n, err := e.client.Get(ctx, e.userPrefix(op.User), clientv3.WithPrefix(), clientv3.WithCountOnly())
				if err != nil {
					return err
				}
				if n.Count >= int64(e.maxUser) {
					op.Result = heads.LimitExceeded
					return nil
				}
				next, result = a, heads.Created
			case cur.EventNumber < a.EventNumber:
				next, result = a, heads.Adopted
			case cur.EventNumber == a.EventNumber && cur != a:
				op.Result, op.Head = heads.Conflict, cur
				return nil
			default:
				op.Result, op.Head = heads.Unchanged, cur
				return nil
			}
		default:
			return errors.New("etcd heads: unknown op")
		}
		resp, err := e.client.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
			Then(clientv3.OpPut(key, encodeHead(next))).
			Else(clientv3.OpGet(key)).Commit()
		if err != nil {
			return err
		}
		if resp.Succeeded {
			e.remember(key, resp.Header.Revision, next)
			op.Result, op.Head = result, next
			return nil
		}
		cur, rev = protocol.Head{}, 0
		if rr := resp.Responses[0].GetResponseRange(); rr != nil && len(rr.Kvs) > 0 {
			if h, err := decodeHead(rr.Kvs[0].Value); err == nil {
				cur, rev = h, rr.Kvs[0].ModRevision
			}
		}
		e.remember(key, rev, cur)
	}
	return errors.New("etcd heads: too much contention")
}

// read returns the head at key and its revision (0: none), from this
// node's copy unless fresh is set or there is none.
func (e *etcdHeads) read(ctx context.Context, key string, fresh bool) (protocol.Head, int64, error) {
	if !fresh {
		e.mu.Lock()
		c, ok := e.revision[key]
		e.mu.Unlock()
		if ok {
			return c.head, c.rev, nil
		}
	}
	resp, err := e.client.Get(ctx, key)
	if err != nil {
		return protocol.Head{}, 0, err
	}
	if len(resp.Kvs) == 0 {
		return protocol.Head{}, 0, nil
	}
	h, err := decodeHead(resp.Kvs[0].Value)
	if err != nil {
		return protocol.Head{}, 0, err
	}
	e.remember(key, resp.Kvs[0].ModRevision, h)
	return h, resp.Kvs[0].ModRevision, nil
}

func (e *etcdHeads) remember(key string, rev int64, h protocol.Head) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if rev == 0 {
		delete(e.revision, key)
		return
	}
	e.revision[key] = cachedHead{rev: rev, head: h}
}

func (e *etcdHeads) Close() error { return e.client.Close() }
