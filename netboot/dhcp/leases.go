package dhcp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/goldcast/goldcast/internal/durable"
	"golang.org/x/sys/unix"
)

// Lease binds an address to a client's MAC address until Expiry.
type Lease struct {
	// MAC is the client's hardware address; a store keeps one lease per
	// MAC.
	MAC net.HardwareAddr
	// IP is the leased address.
	IP netip.Addr
	// Hostname is the reserved host name, or the one the client sent.
	Hostname string
	// Expiry is when the lease ends. An expired lease's address may go
	// to another client; until it does, it is still offered to this one
	// first.
	Expiry time.Time
}

// Expired reports whether the lease has ended at now.
func (l Lease) Expired(now time.Time) bool { return !now.Before(l.Expiry) }

// LeaseStore keeps leases, one per MAC address.
type LeaseStore interface {
	// Get returns the lease of mac, if there is one (expired or not).
	Get(mac net.HardwareAddr) (Lease, bool, error)
	// Put stores l, replacing the lease of l.MAC. It returns only once the
	// lease is durable: the server sends the DHCPACK after Put returns.
	Put(l Lease) error
	// Delete removes the lease of mac; a missing lease is not an error.
	Delete(mac net.HardwareAddr) error
	// All returns every lease, in no particular order.
	All() ([]Lease, error)
}

// Reservations maps MAC addresses to fixed addresses (goldcast's node
// records).
type Reservations interface {
	// Lookup returns mac's reserved address and host name. ok is false
	// when mac has no reservation.
	Lookup(mac net.HardwareAddr) (ip netip.Addr, hostname string, ok bool)
}

// AddressReserver may be implemented by a Reservations whose addresses lie
// inside Config.Range: the pool then never hands a reserved address to
// another MAC.
type AddressReserver interface {
	// ReservedFor returns the MAC an address is reserved for.
	ReservedFor(ip netip.Addr) (mac net.HardwareAddr, ok bool)
}

// leaseRecord is one line of a FileLeaseStore.
type leaseRecord struct {
	// Op is "put" or "del".
	Op       string     `json:"op"`
	MAC      string     `json:"mac"`
	IP       netip.Addr `json:"ip,omitzero"`
	Hostname string     `json:"hostname,omitempty"`
	Expiry   time.Time  `json:"expiry,omitzero"`
}

// FileLeaseStore is a LeaseStore in one file of JSON lines, each a put or
// a delete, appended and flushed (fsync) before Put or Delete returns. It
// keeps every lease in memory, rewrites the file without superseded lines
// when it opens it and when they outnumber the live ones, and holds an
// exclusive lock (PATH.lock) so two servers never share it. A line torn by
// a crash at the end of the file is dropped: its Put never returned, so no
// DHCPACK announced it.
//
// Writes are group-committed: one goroutine appends the lines of every
// Put and Delete waiting at that moment with a single write and a single
// flush, and each returns once the flush that carried its line is done.
// Concurrent callers therefore share flushes, and a store under load
// flushes about once per disk round trip instead of once per lease.
// Get and All see a lease once it is durable.
type FileLeaseStore struct {
	path string
	lock *os.File

	mu     sync.Mutex
	f      *os.File
	size   int64
	lines  int
	leases map[string]Lease
	broken error
	// retryCompact is the line count before which a failed compaction
	// is not tried again.
	retryCompact int
	// next collects the records of the next flush; kick wakes the
	// flusher (closed by Close), which closes flushed when it is gone.
	next    *commit
	kick    chan struct{}
	flushed chan struct{}
}

// commit is one group of records written and flushed together.
type commit struct {
	recs []leaseRecord
	buf  []byte
	done chan struct{}
	err  error
}

// compactSlack is how many superseded lines a FileLeaseStore tolerates
// beyond its live leases before it rewrites the file.
const compactSlack = 1024

// OpenFileLeaseStore opens (creating if needed) the lease file at path.
func OpenFileLeaseStore(path string) (*FileLeaseStore, error) {
	lock, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lease store lock: %w", err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("lock lease store %s (is another server using it?): %w", path, err)
	}
	s := &FileLeaseStore{path: path, lock: lock, leases: map[string]Lease{}}
	if err := s.load(); err != nil {
		lock.Close()
		return nil, err
	}
	if err := s.compact(); err != nil {
		lock.Close()
		return nil, err
	}
	s.kick = make(chan struct{}, 1)
	s.flushed = make(chan struct{})
	go s.flusher(s.kick)
	return s, nil
}

// load reads the lease file into memory.
func (s *FileLeaseStore) load() error {
	data, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read lease store: %w", err)
	}
	for n := 1; len(data) > 0; n++ {
		line, rest, complete := bytes.Cut(data, []byte("\n"))
		data = rest
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var rec leaseRecord
		err := json.Unmarshal(line, &rec)
		var mac net.HardwareAddr
		if err == nil {
			mac, err = net.ParseMAC(rec.MAC)
		}
		if err == nil && rec.Op != "put" && rec.Op != "del" {
			err = fmt.Errorf("unknown op %q", rec.Op)
		}
		if err != nil {
			if !complete {
				// A torn final line from a crash mid-append.
				break
			}
			return fmt.Errorf("read lease store %s line %d: %w", s.path, n, err)
		}
		if rec.Op == "del" {
			delete(s.leases, mac.String())
			continue
		}
		s.leases[mac.String()] = Lease{MAC: mac, IP: rec.IP, Hostname: rec.Hostname, Expiry: rec.Expiry}
	}
	return nil
}

// compact rewrites the file with one line per live lease, through a
// flushed temporary file renamed into place, and reopens it for appending.
// Should the new file not reopen, the store refuses further writes: they
// would go to the replaced file. The caller holds s.mu or has the store
// to itself.
func (s *FileLeaseStore) compact() error {
	var buf bytes.Buffer
	keys := make([]string, 0, len(s.leases))
	for k := range s.leases {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		line, err := encodeRecord(putRecord(s.leases[k]))
		if err != nil {
			return err
		}
		buf.Write(line)
	}
	if err := durable.WriteFile(s.path, buf.Bytes(), 0o600); err != nil {
		return fmt.Errorf("compact lease store: %w", err)
	}
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		err = fmt.Errorf("reopen lease store after compaction: %w", err)
		s.broken = err
		return err
	}
	if s.f != nil {
		s.f.Close()
	}
	s.f, s.size, s.lines = f, int64(buf.Len()), len(keys)
	return nil
}

// Get implements LeaseStore.
func (s *FileLeaseStore) Get(mac net.HardwareAddr) (Lease, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.leases[mac.String()]
	return cloneLease(l), ok, nil
}

// All implements LeaseStore.
func (s *FileLeaseStore) All() ([]Lease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Lease, 0, len(s.leases))
	for _, l := range s.leases {
		out = append(out, cloneLease(l))
	}
	return out, nil
}

// Put implements LeaseStore: the line is on disk when it returns.
func (s *FileLeaseStore) Put(l Lease) error {
	if len(l.MAC) == 0 || !l.IP.Is4() {
		return fmt.Errorf("put lease %v %v: want a MAC and an IPv4 address", l.MAC, l.IP)
	}
	if err := s.write(putRecord(l)); err != nil {
		return fmt.Errorf("put lease %v: %w", l.MAC, err)
	}
	return nil
}

// Delete implements LeaseStore.
func (s *FileLeaseStore) Delete(mac net.HardwareAddr) error {
	s.mu.Lock()
	_, ok := s.leases[mac.String()]
	s.mu.Unlock()
	if !ok {
		return nil
	}
	if err := s.write(leaseRecord{Op: "del", MAC: mac.String()}); err != nil {
		return fmt.Errorf("delete lease %v: %w", mac, err)
	}
	return nil
}

// Close waits for the writes under way, then releases the file and its
// lock.
func (s *FileLeaseStore) Close() error {
	s.mu.Lock()
	if s.kick == nil {
		s.mu.Unlock()
		return nil
	}
	close(s.kick)
	s.kick = nil
	s.mu.Unlock()
	<-s.flushed

	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.f.Close()
	s.f = nil
	s.broken = errors.New("lease store closed")
	if lerr := s.lock.Close(); err == nil {
		err = lerr
	}
	if err != nil {
		return fmt.Errorf("close lease store: %w", err)
	}
	return nil
}

// write queues rec for the next flush and waits for it.
func (s *FileLeaseStore) write(rec leaseRecord) error {
	line, err := encodeRecord(rec)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if s.kick == nil {
		s.mu.Unlock()
		return errors.New("lease store closed")
	}
	if s.next == nil {
		s.next = &commit{done: make(chan struct{})}
	}
	c := s.next
	c.recs = append(c.recs, rec)
	c.buf = append(c.buf, line...)
	select {
	case s.kick <- struct{}{}:
	default:
	}
	s.mu.Unlock()
	<-c.done
	return c.err
}

// flusher writes queued commits until Close closes kick, then the ones
// left.
func (s *FileLeaseStore) flusher(kick <-chan struct{}) {
	defer close(s.flushed)
	for range kick {
		for s.flushNext() {
		}
	}
	for s.flushNext() {
	}
}

// flushNext writes and flushes the queued commit, if any, and reports
// whether there was one.
func (s *FileLeaseStore) flushNext() bool {
	s.mu.Lock()
	c := s.next
	s.next = nil
	f, size, broken := s.f, s.size, s.broken
	s.mu.Unlock()
	if c == nil {
		return false
	}
	err := broken
	if err == nil {
		// Only the flusher writes or replaces s.f, so it may use it
		// without the lock.
		_, err = f.Write(c.buf)
		if err == nil {
			err = f.Sync()
		}
	}
	s.mu.Lock()
	if err != nil && broken == nil {
		// Cut the failed write off again so the next line starts clean;
		// if even that fails, refuse further writes.
		if terr := f.Truncate(size); terr != nil {
			s.broken = fmt.Errorf("lease store unusable after a failed write: %w", terr)
		}
	}
	if err == nil {
		s.size += int64(len(c.buf))
		s.lines += len(c.recs)
		for _, rec := range c.recs {
			s.apply(rec)
		}
		// The records are durable, so a failed rewrite is not these
		// callers' failure: the file just stays long a while more.
		if s.maybeCompact() != nil {
			s.retryCompact = s.lines + compactSlack
		}
	}
	s.mu.Unlock()
	c.err = err
	close(c.done)
	return true
}

// apply makes a durable record visible to Get and All. The caller holds
// s.mu.
func (s *FileLeaseStore) apply(rec leaseRecord) {
	mac, err := net.ParseMAC(rec.MAC)
	if err != nil {
		return
	}
	if rec.Op == "del" {
		delete(s.leases, mac.String())
		return
	}
	s.leases[mac.String()] = Lease{MAC: mac, IP: rec.IP, Hostname: rec.Hostname, Expiry: rec.Expiry}
}

// maybeCompact rewrites the file when superseded lines dominate.
func (s *FileLeaseStore) maybeCompact() error {
	if s.lines <= 2*len(s.leases)+compactSlack || s.lines < s.retryCompact {
		return nil
	}
	return s.compact()
}

// putRecord is the line that stores l.
func putRecord(l Lease) leaseRecord {
	return leaseRecord{Op: "put", MAC: l.MAC.String(), IP: l.IP, Hostname: l.Hostname, Expiry: l.Expiry.UTC()}
}

// encodeRecord is rec as one JSON line.
func encodeRecord(rec leaseRecord) ([]byte, error) {
	line, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("encode lease record: %w", err)
	}
	return append(line, '\n'), nil
}

// cloneLease copies l so callers cannot alter the store's MAC slice.
func cloneLease(l Lease) Lease {
	l.MAC = slices.Clone(l.MAC)
	return l
}

// Compile-time checks.
var (
	_ LeaseStore = (*FileLeaseStore)(nil)
	_ io.Closer  = (*FileLeaseStore)(nil)
)
