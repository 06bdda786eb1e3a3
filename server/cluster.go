package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/goldcast/goldcast/config"
)

// cluster holds the running goldcast.yaml. Readers get a consistent
// snapshot; a reload replaces it whole, and only with a valid file.
type cluster struct {
	path     string
	explicit bool
	log      *slog.Logger
	current  atomic.Pointer[config.Config]
	// stamp identifies the file version loaded (size, mtime, inode).
	stamp atomic.Value
	// onReload is told of every configuration that replaced the last,
	// with the one it replaced.
	onReload func(old, new *config.Config)
	// editMu serializes the server's own edits of the file.
	editMu sync.Mutex
}

func newCluster(cfg Config, log *slog.Logger) (*cluster, error) {
	c := &cluster{path: cfg.ConfigPath, explicit: cfg.ConfigPath != "", log: log}
	if !c.explicit {
		c.path = filepath.Join(cfg.DataDir, "goldcast.yaml")
	}
	conf, err := c.load()
	if err != nil {
		return nil, err
	}
	c.current.Store(conf)
	return c, nil
}

// Get returns the running configuration.
func (c *cluster) Get() *config.Config { return c.current.Load() }

type fileStamp struct {
	size  int64
	mtime time.Time
	ino   uint64
}

func (c *cluster) statStamp() fileStamp {
	fi, err := os.Stat(c.path)
	if err != nil {
		return fileStamp{}
	}
	st := fileStamp{size: fi.Size(), mtime: fi.ModTime()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = sys.Ino
	}
	return st
}

// load reads the file; a missing default file is an empty configuration.
func (c *cluster) load() (*config.Config, error) {
	stamp := c.statStamp()
	conf, err := config.Load(c.path)
	if errors.Is(err, fs.ErrNotExist) && !c.explicit {
		conf, err = config.Default(), nil
	}
	if err != nil {
		return nil, err
	}
	c.stamp.Store(stamp)
	return conf, nil
}

// Reload loads the file again. An invalid file leaves the running
// configuration in place and returns the validation errors (which name
// file, line and field).
func (c *cluster) Reload() error {
	conf, err := c.load()
	if err != nil {
		c.log.Error("configuration not reloaded: the file is invalid; the running configuration stays", "file", c.path, "err", err)
		return err
	}
	old := c.current.Swap(conf)
	c.log.Info("configuration reloaded", "file", c.path, "nodes", len(conf.ExpandedNodes()), "groups", len(conf.Groups))
	if c.onReload != nil {
		c.onReload(old, conf)
	}
	return nil
}

// Watch reloads on SIGHUP and whenever the file changes (polled every
// interval), until ctx ends.
func (c *cluster) Watch(ctx context.Context, interval time.Duration) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			c.log.Info("SIGHUP: reloading configuration", "file", c.path)
			c.Reload()
		case <-t.C:
			last, _ := c.stamp.Load().(fileStamp)
			if now := c.statStamp(); now != last {
				c.stamp.Store(now) // report an invalid file once, not every tick
				c.Reload()
			}
		}
	}
}

// Edit changes goldcast.yaml through the comment-preserving editor (the
// same one the node and group commands use), saves it atomically and
// loads the result. edit returns false when it changed nothing.
// Conflicting writers are caught by the editor (ConflictError).
func (c *cluster) Edit(edit func(*config.Editor) (bool, error)) error {
	c.editMu.Lock()
	defer c.editMu.Unlock()
	ed, err := config.OpenEditor(c.path)
	if err != nil {
		return fmt.Errorf("edit %s: %w", c.path, err)
	}
	changed, err := edit(ed)
	if err != nil || !changed {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(c.path), 0o755); err != nil {
		return fmt.Errorf("edit %s: %w", c.path, err)
	}
	if err := ed.Save(); err != nil {
		return fmt.Errorf("save %s: %w", c.path, err)
	}
	return c.Reload()
}
