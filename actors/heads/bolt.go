package heads

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/livestore-relay/livestore-relay/protocol"
)

// FileName is the state file's name inside the state directory.
const FileName = "heads.db"

var bucketName = []byte("heads")

// boltStore is the durable copy of the heads. Only the keeper's goroutine
// writes it.
type boltStore struct {
	db   *bolt.DB
	path string
}

func openBolt(dir string) (*boltStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("heads: state directory: %w", err)
	}
	path := filepath.Join(dir, FileName)
	// A second process on the same directory would wait for the file lock
	// for ever; fail instead.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("heads: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketName)
		return err
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("heads: prepare %s: %w", path, err)
	}
	return &boltStore{db: db, path: path}, nil
}

func (s *boltStore) close() error { return s.db.Close() }

// write commits changes in one transaction; bbolt syncs the file before
// Update returns.
func (s *boltStore) write(changes []change) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketName)
		var kbuf, vbuf []byte
		for i := range changes {
			c := &changes[i]
			kbuf = appendKey(kbuf[:0], c.user, c.store)
			vbuf = appendValue(vbuf[:0], c.next)
			// Put keeps references to key and value until the
			// transaction ends, so each pair needs its own copy.
			if err := b.Put(append([]byte(nil), kbuf...), append([]byte(nil), vbuf...)); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *boltStore) load(each func(user, store string, h protocol.Head)) error {
	return s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketName).ForEach(func(k, v []byte) error {
			user, store, ok := parseKey(k)
			if !ok {
				return errors.New("malformed key")
			}
			h, ok := parseValue(v)
			if !ok {
				return errors.New("malformed head")
			}
			each(user, store, h)
			return nil
		})
	})
}

// A key is the user's length as a uvarint, the user, then the store id; a
// value is the eventNumber as a uvarint, the clientId's length as a
// uvarint, the clientId, then the sessionId.

func appendKey(dst []byte, user, store string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(user)))
	dst = append(dst, user...)
	return append(dst, store...)
}

func parseKey(k []byte) (user, store string, ok bool) {
	n, w := binary.Uvarint(k)
	if w <= 0 || uint64(len(k)-w) < n {
		return "", "", false
	}
	k = k[w:]
	return string(k[:n]), string(k[n:]), true
}

func appendValue(dst []byte, h protocol.Head) []byte {
	dst = binary.AppendUvarint(dst, uint64(h.EventNumber))
	dst = binary.AppendUvarint(dst, uint64(len(h.ClientID)))
	dst = append(dst, h.ClientID...)
	return append(dst, h.SessionID...)
}

func parseValue(v []byte) (protocol.Head, bool) {
	num, w := binary.Uvarint(v)
	if w <= 0 || num > 1<<63-1 {
		return protocol.Head{}, false
	}
	v = v[w:]
	n, w := binary.Uvarint(v)
	if w <= 0 || uint64(len(v)-w) < n {
		return protocol.Head{}, false
	}
	v = v[w:]
	return protocol.Head{EventNumber: int64(num), ClientID: string(v[:n]), SessionID: string(v[n:])}, true
}
