package sysconf

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
)

// All paths below are relative to the target root, slash-separated and
// without a leading slash ("etc/hosts"), as os.Root takes them.

// readFile returns the content of rel, or nil and no error when it does
// not exist. A final symbolic link with an absolute target is followed as
// it would be on the node: inside the root.
func (c *configurer) readFile(rel string) ([]byte, error) {
	name := rel
	for range 8 {
		st, err := c.root.Lstat(name)
		if err != nil || st.Mode()&fs.ModeSymlink == 0 {
			break
		}
		target, err := c.root.Readlink(name)
		if err != nil || !path.IsAbs(target) {
			break
		}
		name = strings.TrimLeft(path.Clean(target), "/")
		if name == "" {
			name = "."
		}
	}
	data, err := c.root.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read /%s: %w", rel, err)
	}
	return data, nil
}

// lstat returns rel's file info without following a final symbolic link,
// or nil when it does not exist.
func (c *configurer) lstat(rel string) (fs.FileInfo, error) {
	st, err := c.root.Lstat(rel)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("stat /%s: %w", rel, err)
	}
	return st, nil
}

// exists reports whether rel exists (as anything, a dangling symbolic
// link included). Errors count as "does not exist": it is for detection.
func (c *configurer) exists(rel string) bool {
	st, err := c.lstat(rel)
	return err == nil && st != nil
}

// isDir reports whether rel is a directory, following symbolic links
// that stay inside the root.
func (c *configurer) isDir(rel string) bool {
	st, err := c.root.Stat(rel)
	return err == nil && st.IsDir()
}

// isRegular reports whether rel is a regular file (not a symbolic link).
func (c *configurer) isRegular(rel string) bool {
	st, err := c.lstat(rel)
	return err == nil && st != nil && st.Mode().IsRegular()
}

// writeFile replaces rel with data and mode perm, atomically: the data is
// written to a temporary file beside it that is renamed over it, so a
// final symbolic link is replaced, never followed. Missing parent
// directories are created (mode 0755). It reports whether anything
// changed: an existing regular file with the same content and mode is
// left alone.
func (c *configurer) writeFile(rel string, data []byte, perm fs.FileMode) (bool, error) {
	if st, err := c.lstat(rel); err != nil {
		return false, err
	} else if st != nil && st.IsDir() {
		return false, fmt.Errorf("write /%s: is a directory", rel)
	} else if st != nil && st.Mode().IsRegular() && st.Mode().Perm() == perm {
		if old, err := c.root.ReadFile(rel); err == nil && bytes.Equal(old, data) {
			return false, nil
		}
	}
	if dir := path.Dir(rel); dir != "." {
		if err := c.root.MkdirAll(dir, 0o755); err != nil {
			return false, fmt.Errorf("create /%s: %w", dir, err)
		}
	}
	tmp := path.Join(path.Dir(rel), ".goldcast-"+path.Base(rel)+".tmp")
	if err := c.root.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("remove stale /%s: %w", tmp, err)
	}
	f, err := c.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return false, fmt.Errorf("create /%s: %w", tmp, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm) // the umask may have narrowed it
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = c.root.Rename(tmp, rel)
	}
	if err != nil {
		_ = c.root.Remove(tmp)
		return false, fmt.Errorf("write /%s: %w", rel, err)
	}
	return true, nil
}

// moveAside renames rel to rel+".goldcast-orig" (replacing an older one),
// so the software reading its directory ignores it but nothing is lost.
func (c *configurer) moveAside(rel string) error {
	if err := c.root.Rename(rel, rel+origSuffix); err != nil {
		return fmt.Errorf("move /%s aside: %w", rel, err)
	}
	c.changed(rel, "moved aside to "+path.Base(rel)+origSuffix)
	return nil
}

// origSuffix is appended to the image's files that a step replaces but
// keeps.
const origSuffix = ".goldcast-orig"

// listDir returns the names of the entries of directory rel, sorted; none
// when it does not exist.
func (c *configurer) listDir(rel string) ([]string, error) {
	d, err := c.root.Open(rel)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open /%s: %w", rel, err)
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("read /%s: %w", rel, err)
	}
	slices.Sort(names)
	return names, nil
}

// isSymlink reports whether rel is a symbolic link.
func (c *configurer) isSymlink(rel string) bool {
	st, err := c.lstat(rel)
	return err == nil && st != nil && st.Mode()&fs.ModeSymlink != 0
}
