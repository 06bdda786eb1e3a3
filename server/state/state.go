// Package state is the goldcast server's embedded, crash-safe state store.
//
// It keeps capture sessions (at most one active upload of a new image
// version per image), the last reported status of every node, and an
// append-only event log that clients can follow live with Watch. Everything
// lives in one bbolt file inside the server's data directory; values are
// JSON and every write is a bbolt transaction that is fsynced before the
// method returns (AppendNodeEvent, the nodes' progress reports, shares one
// among concurrent callers), so nothing a method has acknowledged is lost
// when the server is killed.
//
// A Store holds an exclusive lock on its file: a second goldcast server on
// the same data directory fails in Open instead of corrupting the state.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// lockTimeout is how long Open waits for another process to release the
// database file lock before it gives up.
const lockTimeout = 2 * time.Second

// defaultWatchBuffer is how many live events a watcher may have pending
// before it falls back to re-reading the log from the database.
const defaultWatchBuffer = 256

// Bucket names. They are part of the on-disk format.
const (
	bucketCaptures = "captures"        // session ID -> CaptureSession
	bucketActive   = "captures-active" // image -> ID of its active session
	bucketNodes    = "nodes"           // node name -> NodeStatus
	bucketEvents   = "events"          // big-endian uint64 Seq -> Event
)

// Errors reported by the Store; match them with errors.Is.
var (
	// ErrNotFound is returned when a capture session or node is unknown.
	ErrNotFound = errors.New("not found")
	// ErrCaptureActive is returned by BeginCapture when the image already
	// has an active, non-stale capture session.
	ErrCaptureActive = errors.New("capture already active")
	// ErrNotActive is returned when a capture session that has already
	// been published, failed or abandoned is touched or finished.
	ErrNotActive = errors.New("capture session is not active")
	// ErrInUse is returned by Open when another process holds the lock
	// on the database file.
	ErrInUse = errors.New("file lock is held")
	// ErrClosed is returned by methods called after Close.
	ErrClosed = errors.New("state store is closed")
)

// Store is an open state database. Its methods are safe for concurrent use.
type Store struct {
	db   *bolt.DB
	path string

	// watchBuffer is the capacity of each watcher's live-event queue.
	watchBuffer int

	mu       sync.Mutex
	closed   bool
	watchers map[*watcher]struct{}

	done      chan struct{} // closed by Close to stop watchers
	watching  sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// Open opens or creates the state database at path. If another process
// (normally a second goldcast server on the same data directory) holds the
// database, Open gives up after a short timeout and returns an error that
// wraps ErrInUse.
func Open(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("state database %q is in use by another goldcast server (%w, waited %s)",
			path, ErrInUse, lockTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("open state database %q: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range []string{bucketCaptures, bucketActive, bucketNodes, bucketEvents} {
			if _, err := tx.CreateBucketIfNotExists([]byte(name)); err != nil {
				return fmt.Errorf("create bucket %q: %w", name, err)
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("initialize state database %q: %w", path, err)
	}
	return &Store{
		db:          db,
		path:        path,
		watchBuffer: defaultWatchBuffer,
		watchers:    make(map[*watcher]struct{}),
		done:        make(chan struct{}),
	}, nil
}

// Close ends all watchers (their channels are closed) and closes the
// database, releasing its file lock. It is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		close(s.done)
		s.mu.Unlock()
		s.watching.Wait()
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("close state database %q: %w", s.path, err)
		}
	})
	return s.closeErr
}

// update runs fn in a read-write transaction, committed (and fsynced)
// before update returns.
func (s *Store) update(fn func(tx *bolt.Tx) error) error {
	if s.isClosed() {
		return ErrClosed
	}
	return s.db.Update(fn)
}

// batch runs fn in a read-write transaction that concurrent batch
// callers may share, committed (and fsynced) before batch returns: many
// nodes reporting at once cost one disk sync, not one each. fn may run
// more than once (when a shared transaction fails, each function is
// retried alone), so it must set everything it returns afresh.
func (s *Store) batch(fn func(tx *bolt.Tx) error) error {
	if s.isClosed() {
		return ErrClosed
	}
	return s.db.Batch(fn)
}

// view runs fn in a read-only transaction.
func (s *Store) view(fn func(tx *bolt.Tx) error) error {
	if s.isClosed() {
		return ErrClosed
	}
	return s.db.View(fn)
}

func (s *Store) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// getJSON decodes the value stored under key in bucket b into v; it
// reports false when the key is absent.
func getJSON(b *bolt.Bucket, key []byte, v any) (bool, error) {
	data := b.Get(key)
	if data == nil {
		return false, nil
	}
	return true, decodeJSON(key, data, v)
}

// decodeJSON decodes data, the value stored under key, into v.
func decodeJSON(key, data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode value of key %x: %w", key, err)
	}
	return nil
}

// putJSON stores v as JSON under key in bucket b.
func putJSON(b *bolt.Bucket, key []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode value of key %x: %w", key, err)
	}
	if err := b.Put(key, data); err != nil {
		return fmt.Errorf("store value of key %x: %w", key, err)
	}
	return nil
}
