package store

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/goldcast/goldcast/internal/durable"
	"golang.org/x/sys/unix"
)

// staging is a private area where one version is built. Its lock file is
// flock-held for as long as the builder lives; an area whose lock can be
// taken belongs to a dead process.
type staging struct {
	dir  string
	lock *os.File
}

// stagingNote is written into each staging area so a later cleanup can say
// what it removes.
type stagingNote struct {
	Image   string    `json:"image"`
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
	Purpose string    `json:"purpose"`
}

func (s *Store) newStaging(image, purpose string) (*staging, error) {
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, fmt.Errorf("staging id: %w", err)
	}
	dir := filepath.Join(s.root, ".staging", hex.EncodeToString(id[:]))
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create staging area: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("create staging lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("lock staging area: %w", err)
	}
	note, _ := json.Marshal(stagingNote{Image: image, PID: os.Getpid(), Started: time.Now().UTC(), Purpose: purpose})
	if err := os.WriteFile(filepath.Join(dir, "note.json"), note, 0o600); err != nil {
		f.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("write staging note: %w", err)
	}
	vdir := filepath.Join(dir, "v")
	if err := os.MkdirAll(filepath.Join(vdir, "tree"), 0o755); err != nil {
		f.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("create staging tree: %w", err)
	}
	return &staging{dir: dir, lock: f}, nil
}

// versionDir is the directory that becomes the published version.
func (st *staging) versionDir() string { return filepath.Join(st.dir, "v") }

// tree is the root being built.
func (st *staging) tree() string { return filepath.Join(st.dir, "v", "tree") }

// discard removes the staging area and releases its lock.
func (st *staging) discard() {
	durable.RemoveTree(st.dir)
	st.lock.Close()
}

// cleanStaging removes staging areas whose builder died.
func (s *Store) cleanStaging() error {
	base := filepath.Join(s.root, ".staging")
	ents, err := os.ReadDir(base)
	if err != nil {
		return fmt.Errorf("read staging areas: %w", err)
	}
	for _, d := range ents {
		dir := filepath.Join(base, d.Name())
		f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR, 0)
		if err != nil {
			// A builder that just made its directory may not have its
			// lock file yet: leave young areas alone.
			if fi, serr := os.Stat(dir); serr == nil && time.Since(fi.ModTime()) < time.Minute {
				continue
			}
		}
		if err == nil {
			if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
				f.Close() // a live builder holds it
				continue
			}
		}
		var note stagingNote
		if raw, err := os.ReadFile(filepath.Join(dir, "note.json")); err == nil {
			_ = json.Unmarshal(raw, &note)
		}
		rmErr := durable.RemoveTree(dir)
		if f != nil {
			f.Close()
		}
		if rmErr != nil {
			return fmt.Errorf("remove interrupted staging area %q: %w", dir, rmErr)
		}
		s.log.Warn("removed the staging area of an interrupted "+orDefault(note.Purpose, "import")+"; no version was published",
			"image", note.Image, "pid", note.PID, "started", note.Started.Format(time.RFC3339))
	}
	return nil
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// publish moves a finished staging area into place as the image's next
// version: image.json and the manifest are already written; the tree is
// flushed to disk before the rename makes the version visible.
func (s *Store) publish(st *staging, name string, info *Info) (*Version, error) {
	if err := durable.SyncFS(st.dir); err != nil {
		return nil, fmt.Errorf("flush staging area: %w", err)
	}
	unlock, err := s.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := os.MkdirAll(filepath.Join(s.imageDir(name), "versions"), 0o755); err != nil {
		return nil, fmt.Errorf("create image %q: %w", name, err)
	}
	seqPath := filepath.Join(s.imageDir(name), "sequence")
	last := 0
	if raw, err := os.ReadFile(seqPath); err == nil {
		last, _ = strconv.Atoi(string(raw))
	}
	if vs, err := s.Versions(name); err == nil && len(vs) > 0 {
		last = max(last, vs[len(vs)-1].Info.Version)
	}
	info.Version = last + 1
	info.Image = name
	info.Created = time.Now().UTC()
	if err := writeInfo(st.versionDir(), info); err != nil {
		return nil, err
	}
	if err := durable.WriteFile(seqPath, []byte(strconv.Itoa(info.Version)), 0o644); err != nil {
		return nil, fmt.Errorf("record version number of %q: %w", name, err)
	}
	dst := s.versionDir(name, info.Version)
	if err := os.Rename(st.versionDir(), dst); err != nil {
		return nil, fmt.Errorf("publish %s@%d: %w", name, info.Version, err)
	}
	if err := durable.SyncDir(filepath.Dir(dst)); err != nil {
		return nil, fmt.Errorf("publish %s@%d: %w", name, info.Version, err)
	}
	st.discard()
	return s.load(name, info.Version)
}

func writeInfo(dir string, info *Info) error {
	stored := *info
	// Name and number come from where the version is stored (so a
	// renamed image stays right); path and signed are found on read.
	stored.Image, stored.Version, stored.Path, stored.Signed = "", 0, "", false
	raw, err := json.MarshalIndent(stored, "", "  ")
	if err != nil {
		return fmt.Errorf("encode image.json: %w", err)
	}
	if err := durable.WriteFile(filepath.Join(dir, "image.json"), append(raw, '\n'), 0o644); err != nil {
		return fmt.Errorf("write image.json: %w", err)
	}
	return nil
}
