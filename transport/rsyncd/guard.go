package rsyncd

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

const (
	// maxArgs bounds the arguments a client may send.
	maxArgs = 4096
	// maxRuleLen bounds a filter rule read only to be reported.
	maxRuleLen = 4096
	// Wire constants of the multiplexed stream, as gokrazy/rsync writes
	// them: a frame header is (mplexBase+tag)<<24 | length, little endian,
	// and an error in place of the checksum seed is announced by errorSeed.
	mplexBase = 7
	msgError  = 1
	errorSeed = 0xee
)

// refusal is a request the daemon turned down on purpose; its text is what
// the client is told.
type refusal struct{ msg string }

// Error returns the reason given to the client.
func (r *refusal) Error() string { return r.msg }

// guardState is how far the client's side of a transfer has got.
type guardState int

const (
	readingArgs    guardState = iota // argument lines, up to an empty one
	readingFilters                   // the filter list: length-prefixed rules ending in a zero length
	passing                          // the transfer proper: bytes pass unread
	refused                          // the request was refused
)

// guard is the reader gokrazy/rsync reads the client through after the
// module is chosen. It reads the client's arguments and filter list
// itself, passing them on only when they are safe (see the package
// documentation), and then steps aside.
//
// The library reads its connection from one goroutine and writes it
// between reads, never during one, so the guard may write an error to the
// client while the library waits in Read.
type guard struct {
	br     *bufio.Reader // the client connection
	w      io.Writer     // the client connection, for errors
	conn   *deadlineConn
	module Module
	log    *slog.Logger

	state   guardState
	pending []byte
	args    []string
	refused error
}

// Read passes on what the client sent once it was found safe.
func (g *guard) Read(p []byte) (int, error) {
	for len(g.pending) == 0 {
		switch g.state {
		case passing:
			return g.br.Read(p)
		case refused:
			return 0, g.refused
		case readingArgs:
			if err := g.readArg(); err != nil {
				return 0, err
			}
		case readingFilters:
			if err := g.readFilter(); err != nil {
				return 0, err
			}
		}
	}
	n := copy(p, g.pending)
	g.pending = g.pending[n:]
	return n, nil
}

// readArg reads one argument line; after the last one it checks them all.
func (g *guard) readArg() error {
	line, err := readLine(g.br)
	if err != nil {
		return fmt.Errorf("read client arguments: %w", err)
	}
	arg := strings.TrimSpace(line)
	if arg != "" {
		if len(g.args) == maxArgs {
			return g.refuseArgs(fmt.Sprintf("more than %d arguments", maxArgs))
		}
		g.args = append(g.args, arg)
		g.pending = []byte(line)
		return nil
	}
	if !slices.Contains(g.args, "--sender") {
		return g.refuseArgs(fmt.Sprintf("module %q is read-only", g.module.Name))
	}
	for _, a := range g.args {
		if reason := unsupportedOption(a); reason != "" {
			return g.refuseArgs(reason)
		}
		if err := checkPath(g.module, a); err != nil {
			return g.refuseArgs(err.Error())
		}
	}
	g.log.Info("rsync pull", "module", g.module.Name, "args", g.args)
	g.conn.timeout.Store(int64(idleTimeout))
	g.state = readingFilters
	g.pending = []byte(line)
	return nil
}

// refuseArgs refuses the request after the arguments. The library is
// waiting for the next argument, having written nothing since
// "@RSYNCD: OK"; the client is waiting for the checksum seed. The client is
// sent what the library sends for arguments it cannot parse: an error
// marker in place of the seed, then the reason as a multiplexed error.
func (g *guard) refuseArgs(reason string) error {
	g.state = refused
	g.refused = &refusal{reason}
	msg := "goldcast rsync daemon: " + reason + "\n"
	var b []byte
	b = binary.LittleEndian.AppendUint32(b, errorSeed)
	b = binary.LittleEndian.AppendUint32(b, uint32(mplexBase+msgError)<<24|uint32(len(msg)))
	b = append(b, msg...)
	if _, err := g.w.Write(b); err != nil {
		return errors.Join(g.refused, fmt.Errorf("send refusal: %w", err))
	}
	return g.refused
}

// readFilter reads one entry of the filter list. The end of the list is
// passed on; any rule is refused. The library then sends the refusal to
// the client as a multiplexed error, since it is already multiplexing.
func (g *guard) readFilter() error {
	var b [4]byte
	if _, err := io.ReadFull(g.br, b[:]); err != nil {
		return fmt.Errorf("read client filter list: %w", err)
	}
	n := int32(binary.LittleEndian.Uint32(b[:]))
	if n == 0 {
		g.state = passing
		g.pending = b[:]
		return nil
	}
	rule := fmt.Sprintf("of %d bytes", n)
	if n > 0 && n <= maxRuleLen {
		r := make([]byte, n)
		if _, err := io.ReadFull(g.br, r); err == nil {
			rule = fmt.Sprintf("%q", r)
		}
	}
	g.state = refused
	g.refused = &refusal{fmt.Sprintf("goldcast rsync daemon: client filter rule %s refused: "+
		"--exclude, --include and --filter are not supported here, because the rsync library "+
		"would drop (and with --delete, delete) files next to the excluded one; "+
		"pull the whole module or name the paths wanted", rule)}
	return g.refused
}

// checkPath refuses an argument that, taken as a path the way
// gokrazy/rsync takes it (relative to the module, after the module-name
// prefix), would reach outside the module: one with a ".." element, or one
// that looks up a symbolic link as a directory. Every argument is
// checked, options too, so the check need not know which ones the library
// will read as paths; options hold neither.
func checkPath(m Module, arg string) error {
	rel := strings.TrimPrefix(arg, m.Name+"/")
	elems := strings.Split(rel, "/")
	if slices.Contains(elems, "..") {
		return fmt.Errorf("path %q leaves module %q", arg, m.Name)
	}
	// The parent directories are looked up through; so is the last
	// element when the path ends in "/" or "/.", asking for a directory's
	// contents.
	target := filepath.Join(m.Path, rel)
	if last := elems[len(elems)-1]; last != "" && last != "." {
		target = filepath.Dir(target)
	}
	parent, err := filepath.Rel(m.Path, target)
	if err != nil || parent == "." {
		return nil
	}
	dir := m.Path
	for _, elem := range strings.Split(parent, "/") {
		dir = filepath.Join(dir, elem)
		fi, err := os.Lstat(dir)
		if err != nil {
			// Missing: the library reports it as vanished.
			return nil
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("path %q crosses the symbolic link %q in module %q", arg, strings.TrimPrefix(dir, m.Path+"/"), m.Name)
		}
		if !fi.IsDir() {
			return nil
		}
	}
	return nil
}

// unsupportedOption says why the option arg is refused, or returns "".
// gokrazy/rsync v0.2.2 accepts these options but does not implement them,
// and the stock client then misreads the stream: with -H it reports a
// bogus file-list index or a hash table error, with -z or --numeric-ids it
// reports an invalid block index and hangs until a timeout, with
// --checksum-choice every file fails verification.
func unsupportedOption(arg string) string {
	if name, ok := strings.CutPrefix(arg, "--"); ok {
		name, _, _ = strings.Cut(name, "=")
		switch name {
		case "hard-links":
			return hardLinksRefused
		case "compress", "compress-level", "compress-choice", "zc", "zl", "old-compress", "new-compress", "skip-compress":
			return compressRefused
		case "numeric-ids":
			return "--numeric-ids is not supported by this daemon: owners and groups are mapped by name; goldcast's manifest records the numeric ids"
		case "checksum-choice", "cc":
			return "--checksum-choice is not supported by this daemon: it speaks rsync protocol 27, which uses MD4"
		}
		return ""
	}
	cluster, ok := strings.CutPrefix(arg, "-")
	if !ok {
		return ""
	}
	for _, c := range cluster {
		switch c {
		case 'e', 'B', 'T', 'f', 'M', '@':
			return "" // the rest of the cluster is this option's value
		case 'H':
			return hardLinksRefused
		case 'z':
			return compressRefused
		}
	}
	return ""
}

const (
	hardLinksRefused = "hard links (-H) are not supported by this daemon: pull without -H to get each link as a separate file; goldcast's manifest records hard links"
	compressRefused  = "compression (-z) is not supported by this daemon: pull without -z"
)
