package state

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Capture session states.
const (
	// CaptureActive is a session still uploading.
	CaptureActive = "active"
	// CapturePublished is a session whose upload became a new image version.
	CapturePublished = "published"
	// CaptureFailed is a session that ended with an error.
	CaptureFailed = "failed"
	// CaptureAbandoned is a session that went stale, or was still active
	// when the server stopped.
	CaptureAbandoned = "abandoned"
)

// CaptureSession is one goldcast capture: a host uploading a new version of
// an image. An image has at most one active session at a time.
type CaptureSession struct {
	// ID is random and URL-safe (32 hex digits).
	ID string `json:"id"`
	// Image is the name of the image being captured.
	Image string `json:"image"`
	// Host is the host the image is captured from.
	Host string `json:"host"`
	// Started is when BeginCapture created the session.
	Started time.Time `json:"started"`
	// Updated is the last time the session was begun, touched or finished.
	Updated time.Time `json:"updated"`
	// State is CaptureActive, CapturePublished, CaptureFailed or
	// CaptureAbandoned.
	State string `json:"state"`
	// Version is the image version created, set when published.
	Version int `json:"version,omitempty"`
	// Error says why the session failed or was abandoned.
	Error string `json:"error,omitempty"`
	// BytesIn is how many bytes the server has received so far.
	BytesIn int64 `json:"bytes_in"`
}

// newID returns 16 random bytes as hex.
func newID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate capture session id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// BeginCapture starts a capture session for image from host. If image
// already has an active session that was updated less than staleAfter
// before now, BeginCapture refuses with an error wrapping ErrCaptureActive
// that names the host and start time of that session. An active session
// older than that is marked abandoned and replaced. A staleAfter of zero or
// less means active sessions never go stale.
func (s *Store) BeginCapture(image, host string, now time.Time, staleAfter time.Duration) (*CaptureSession, error) {
	if image == "" {
		return nil, fmt.Errorf("begin capture: image name is empty")
	}
	var sess *CaptureSession
	err := s.update(func(tx *bolt.Tx) error {
		captures := tx.Bucket([]byte(bucketCaptures))
		active := tx.Bucket([]byte(bucketActive))

		if oldID := active.Get([]byte(image)); oldID != nil {
			var old CaptureSession
			found, err := getJSON(captures, oldID, &old)
			if err != nil {
				return err
			}
			if found && old.State == CaptureActive {
				idle := now.Sub(old.Updated)
				if staleAfter <= 0 || idle < staleAfter {
					return fmt.Errorf("%w: started from %s at %s, last update %s ago (session %s)",
						ErrCaptureActive, old.Host, old.Started.Format(time.RFC3339), idle.Round(time.Second), old.ID)
				}
				old.State = CaptureAbandoned
				old.Error = fmt.Sprintf("stale: no update since %s, replaced by a capture from %s",
					old.Updated.Format(time.RFC3339), host)
				old.Updated = now
				if err := putJSON(captures, []byte(old.ID), &old); err != nil {
					return err
				}
			}
		}

		var id string
		for {
			var err error
			if id, err = newID(); err != nil {
				return err
			}
			if captures.Get([]byte(id)) == nil {
				break
			}
		}
		sess = &CaptureSession{
			ID:      id,
			Image:   image,
			Host:    host,
			Started: now,
			Updated: now,
			State:   CaptureActive,
		}
		if err := putJSON(captures, []byte(id), sess); err != nil {
			return err
		}
		if err := active.Put([]byte(image), []byte(id)); err != nil {
			return fmt.Errorf("index active capture: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("begin capture of image %q from %s: %w", image, host, err)
	}
	return sess, nil
}

// modifyActive loads the active session id, lets fn change it and stores
// it again. It fails with ErrNotFound or ErrNotActive.
func (s *Store) modifyActive(id string, fn func(tx *bolt.Tx, sess *CaptureSession) error) error {
	return s.update(func(tx *bolt.Tx) error {
		captures := tx.Bucket([]byte(bucketCaptures))
		var sess CaptureSession
		found, err := getJSON(captures, []byte(id), &sess)
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("capture session %s: %w", id, ErrNotFound)
		}
		if sess.State != CaptureActive {
			return fmt.Errorf("capture session %s of image %q is %s: %w", id, sess.Image, sess.State, ErrNotActive)
		}
		if err := fn(tx, &sess); err != nil {
			return err
		}
		return putJSON(captures, []byte(id), &sess)
	})
}

// TouchCapture records progress on the active session id: now becomes its
// Updated time (keeping it from going stale) and bytesIn the total number
// of bytes received so far. It fails with ErrNotFound for an unknown
// session and ErrNotActive for one that has ended, for example because it
// went stale and was replaced.
func (s *Store) TouchCapture(id string, now time.Time, bytesIn int64) error {
	err := s.modifyActive(id, func(_ *bolt.Tx, sess *CaptureSession) error {
		sess.Updated = now
		sess.BytesIn = bytesIn
		return nil
	})
	if err != nil {
		return fmt.Errorf("touch capture session: %w", err)
	}
	return nil
}

// FinishCapture ends the active session id in state CapturePublished,
// CaptureFailed or CaptureAbandoned, recording errMsg and, when published,
// the new image version (which must be positive). The image may then be
// captured again. It fails with ErrNotFound for an unknown session and
// ErrNotActive for one that has already ended.
func (s *Store) FinishCapture(id string, state string, version int, errMsg string, now time.Time) error {
	switch state {
	case CapturePublished:
		if version <= 0 {
			return fmt.Errorf("finish capture session %s: published version %d is not positive", id, version)
		}
	case CaptureFailed, CaptureAbandoned:
		version = 0
	default:
		return fmt.Errorf("finish capture session %s: invalid final state %q", id, state)
	}
	err := s.modifyActive(id, func(tx *bolt.Tx, sess *CaptureSession) error {
		sess.State = state
		sess.Version = version
		sess.Error = errMsg
		sess.Updated = now
		return releaseActive(tx, sess)
	})
	if err != nil {
		return fmt.Errorf("finish capture session: %w", err)
	}
	return nil
}

// releaseActive removes sess from the active index if it is the image's
// active session.
func releaseActive(tx *bolt.Tx, sess *CaptureSession) error {
	active := tx.Bucket([]byte(bucketActive))
	if string(active.Get([]byte(sess.Image))) != sess.ID {
		return nil
	}
	if err := active.Delete([]byte(sess.Image)); err != nil {
		return fmt.Errorf("unindex active capture of image %q: %w", sess.Image, err)
	}
	return nil
}

// Capture returns the session id, in any state, or an error wrapping
// ErrNotFound.
func (s *Store) Capture(id string) (*CaptureSession, error) {
	var sess CaptureSession
	err := s.view(func(tx *bolt.Tx) error {
		found, err := getJSON(tx.Bucket([]byte(bucketCaptures)), []byte(id), &sess)
		if err != nil {
			return err
		}
		if !found {
			return ErrNotFound
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("capture session %s: %w", id, err)
	}
	return &sess, nil
}

// activeSessions returns the active sessions, sorted by image.
func activeSessions(tx *bolt.Tx) ([]CaptureSession, error) {
	captures := tx.Bucket([]byte(bucketCaptures))
	var out []CaptureSession
	err := tx.Bucket([]byte(bucketActive)).ForEach(func(image, id []byte) error {
		var sess CaptureSession
		found, err := getJSON(captures, id, &sess)
		if err != nil {
			return err
		}
		if found && sess.State == CaptureActive {
			out = append(out, sess)
		}
		return nil
	})
	return out, err
}

// ActiveCaptures returns the active sessions, sorted by image.
func (s *Store) ActiveCaptures() ([]CaptureSession, error) {
	var out []CaptureSession
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		out, err = activeSessions(tx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list active captures: %w", err)
	}
	return out, nil
}

// AbandonAll marks every active session abandoned as of now and returns
// them, sorted by image. The server calls it at start, when sessions still
// active were cut off by a crash or restart.
func (s *Store) AbandonAll(now time.Time) ([]CaptureSession, error) {
	var out []CaptureSession
	err := s.update(func(tx *bolt.Tx) error {
		var err error
		if out, err = activeSessions(tx); err != nil {
			return err
		}
		captures := tx.Bucket([]byte(bucketCaptures))
		for i := range out {
			sess := &out[i]
			sess.State = CaptureAbandoned
			sess.Error = fmt.Sprintf("server restarted during capture (last update %s)", sess.Updated.Format(time.RFC3339))
			sess.Updated = now
			if err := putJSON(captures, []byte(sess.ID), sess); err != nil {
				return err
			}
		}
		// Clear the whole index, including any entry pointing at a
		// session that is missing or no longer active.
		if err := tx.DeleteBucket([]byte(bucketActive)); err != nil {
			return fmt.Errorf("clear active capture index: %w", err)
		}
		if _, err := tx.CreateBucket([]byte(bucketActive)); err != nil {
			return fmt.Errorf("recreate active capture index: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("abandon active captures: %w", err)
	}
	return out, nil
}
