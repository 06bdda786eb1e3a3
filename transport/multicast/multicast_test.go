package multicast

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/goldcast/goldcast/images/store"
	"github.com/goldcast/goldcast/images/stream"
	"github.com/goldcast/goldcast/internal/testtree"
)

func TestPacketsRoundTrip(t *testing.T) {
	ann := announce{state: stateSending, dataGroup: netip.MustParseAddr("239.255.72.9"), dataPort: 7172, blockSize: 1440, groupSize: 64,
		streamSize: 123456789, rate: 200e6, version: 7, receivers: 3, image: "web"}
	ann.digest[0], ann.digest[31] = 0xab, 0xcd
	st := status{receiver: 42, state: rxReceiving, nextGroup: 9, received: 1000, delivered: 77, carouselFrom: 1, carouselTo: 5, name: "node01",
		nacks: []nack{{Group: 10, Missing: 2}, {Group: 12, Missing: 64}}}
	st.digest = ann.digest
	rp := reply{receiver: 42, verdict: verdictEvicted, reason: "too slow"}
	d := dataPacket{pass: 2, group: 3, shard: 66, repair: true, payload: []byte("shard bytes")}

	tests := []struct {
		name   string
		packet []byte
		typ    byte
		parse  func([]byte, header) (any, error)
		want   any
	}{
		{"announce", ann.marshal(1), typeAnnounce, func(b []byte, _ header) (any, error) { return parseAnnounce(b) }, ann},
		{"status", st.marshal(1), typeStatus, func(b []byte, _ header) (any, error) { return parseStatus(b) }, st},
		{"reply", rp.marshal(1), typeReply, func(b []byte, _ header) (any, error) { return parseReply(b) }, rp},
		{"data", marshalData(nil, 1, &d), typeData, func(b []byte, h header) (any, error) { return parseData(h, b) }, d},
	}
	opts := cmp.Options{cmp.AllowUnexported(announce{}, status{}, reply{}, dataPacket{}), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, body, err := parseHeader(tc.packet)
			if err != nil {
				t.Fatal(err)
			}
			if h.typ != tc.typ || h.session != 1 {
				t.Fatalf("header %+v", h)
			}
			got, err := tc.parse(body, h)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, opts); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
			// Every single-bit flip is caught by the checksum.
			for i := 0; i < len(tc.packet)*8; i += 7 {
				bad := bytes.Clone(tc.packet)
				bad[i/8] ^= 1 << (i % 8)
				if _, _, err := parseHeader(bad); !errors.Is(err, errPacket) {
					t.Fatalf("bit %d flipped: parsed without error", i)
				}
			}
			// Truncations are refused, not panics.
			for n := 0; n < len(tc.packet); n++ {
				if _, _, err := parseHeader(tc.packet[:n]); err == nil {
					t.Fatalf("truncated to %d bytes: parsed", n)
				}
			}
		})
	}
}

// Parity shard j must not depend on how many parity shards the encoder
// makes: the sender extends parity on demand and receivers decode with
// whatever subset came.
func TestParityIsPrefixStable(t *testing.T) {
	c := newCoder()
	data := make([][]byte, 10)
	for i := range data {
		data[i] = make([]byte, 100)
		rand.Read(data[i])
	}
	small, err := c.parity(data, 2)
	if err != nil {
		t.Fatal(err)
	}
	large, err := c.parity(data, 20)
	if err != nil {
		t.Fatal(err)
	}
	for j := range small {
		if !bytes.Equal(small[j], large[j]) {
			t.Fatalf("parity shard %d differs between 2 and 20 parity shards", j)
		}
	}
	// Lose 5 data shards; rebuild from parity 3, 7, 11, 15, 19 only.
	shards := make([][]byte, 30)
	for i := 5; i < 10; i++ {
		shards[i] = data[i]
	}
	for _, j := range []int{3, 7, 11, 15, 19} {
		shards[10+j] = large[j]
	}
	if err := c.reconstruct(shards, 10); err != nil {
		t.Fatal(err)
	}
	for i := range data {
		if !bytes.Equal(shards[i], data[i]) {
			t.Fatalf("data shard %d rebuilt wrong", i)
		}
	}
}

func TestBlockSizeForMTU(t *testing.T) {
	got := []int{BlockSizeForMTU(1500), BlockSizeForMTU(9000), BlockSizeForMTU(65536), BlockSizeForMTU(0)}
	want := []int{DefaultBlockSize, 8936, 8936, DefaultBlockSize}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("block sizes (-want +got):\n%s", diff)
	}
	for _, b := range got {
		if n := b + headerLen + dataHeaderLen + trailerLen + 28; n > 9000 {
			t.Errorf("block %d makes a %d-byte IP packet", b, n)
		}
	}
}

func TestLayout(t *testing.T) {
	l, err := newLayout(10*100+1, 100, 4) // 11 blocks, 3 groups (4, 4, 3)
	if err != nil {
		t.Fatal(err)
	}
	got := []any{l.blocks, l.groups, l.dataShards(0), l.dataShards(2), l.groupBytes(0), l.groupBytes(2), l.offset(2, 1)}
	want := []any{int64(11), 3, 4, 3, int64(400), int64(201), int64(900)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("layout (-want +got):\n%s", diff)
	}
}

// senderShards makes every shard the sender would send for a stream:
// data, and parity shards 0..p-1 per group.
func senderShards(t *testing.T, stream []byte, lay layout, p int) [][]dataPacket {
	t.Helper()
	c := newCoder()
	var out [][]dataPacket
	for g := 0; g < lay.groups; g++ {
		k := lay.dataShards(g)
		data := make([][]byte, k)
		for i := range data {
			b := make([]byte, lay.blockSize)
			copy(b, stream[min(int64(len(stream)), lay.offset(g, i)):])
			data[i] = b
		}
		par, err := c.parity(data, p)
		if err != nil {
			t.Fatal(err)
		}
		var pk []dataPacket
		for i, b := range append(data, par...) {
			pk = append(pk, dataPacket{pass: 1, group: uint32(g), shard: uint16(i), payload: b})
		}
		out = append(out, pk)
	}
	return out
}

// TestAssemblerRepairsLoss drives the receiver's assembler with a lossy
// pass, answers its NACKs with fresh parity as the sender does, and
// checks the released stream is the original.
func TestAssemblerRepairsLoss(t *testing.T) {
	src := make([]byte, 300_000)
	rand.Read(src)
	lay, _ := newLayout(int64(len(src)), 1000, 16)
	all := senderShards(t, src, lay, 40)
	rng := mrand.New(mrand.NewPCG(1, 2))
	a := newAssembler(lay, 1<<30)
	now := time.Now()
	var got []byte
	drain := func() {
		for {
			b, ok := a.release()
			if !ok {
				return
			}
			got = append(got, b...)
		}
	}
	const proactive = 2
	for g := range all {
		k := lay.dataShards(g)
		for _, d := range all[g][:k+proactive] {
			if rng.IntN(100) < 10 { // 10% loss
				continue
			}
			if err := a.add(d, now); err != nil {
				t.Fatal(err)
			}
		}
		drain()
	}
	a.idle(now.Add(time.Second), 0)
	next := map[int]int{} // next parity index per group
	for round := 0; !a.finished(); round++ {
		if round > 20 {
			t.Fatalf("not finished after 20 repair rounds; next group %d", a.next)
		}
		var st status
		a.report(&st)
		if st.carouselTo > st.carouselFrom {
			t.Fatalf("carousel asked for [%d,%d) though every group was swept", st.carouselFrom, st.carouselTo)
		}
		for _, n := range st.nacks {
			g := int(n.Group)
			k := lay.dataShards(g)
			for i := 0; i < int(n.Missing); i++ {
				j := proactive + next[g]
				next[g]++
				d := all[g][k+j]
				d.repair = true
				if rng.IntN(100) < 10 {
					continue
				}
				a.add(d, now)
			}
		}
		drain()
	}
	if !bytes.Equal(got, src) {
		t.Fatalf("released %d bytes, differ from the %d sent", len(got), len(src))
	}
	if a.rebuilt == 0 {
		t.Errorf("no group was rebuilt from parity at 10%% loss")
	}
}

// TestAssemblerLateJoin: a receiver that first hears the cursor in the
// middle asks for a carousel pass over what it missed, and a small
// window drops what lies beyond it for the next pass too.
func TestAssemblerLateJoin(t *testing.T) {
	src := make([]byte, 100_000)
	rand.Read(src)
	lay, _ := newLayout(int64(len(src)), 1000, 10) // 10 groups
	all := senderShards(t, src, lay, 0)
	a := newAssembler(lay, 4*10*1000) // 4 groups of window
	now := time.Now()
	for g := 6; g < 10; g++ { // joined at group 6
		for _, d := range all[g] {
			a.add(d, now)
		}
	}
	a.idle(now.Add(time.Second), 0)
	var st status
	a.report(&st)
	if diff := cmp.Diff([]uint32{0, 10}, []uint32{st.carouselFrom, st.carouselTo}); diff != "" {
		t.Errorf("carousel range after joining at group 6 with a 4-group window (-want +got):\n%s", diff)
	}
	// Second pass from 0: the window (groups 0-3) moves as groups are released.
	var got []byte
	for g := 0; g < 10; g++ {
		for _, d := range all[g] {
			d.pass = 2
			a.add(d, now)
		}
		for {
			b, ok := a.release()
			if !ok {
				break
			}
			got = append(got, b...)
		}
	}
	if !bytes.Equal(got, src) {
		t.Fatalf("late joiner released %d bytes, not the stream", len(got))
	}
}

func TestPolicy(t *testing.T) {
	tests := []struct {
		name    string
		p       Policy
		waited  time.Duration
		names   []string
		start   bool
		wantErr bool
	}{
		{"zero policy starts with one", Policy{}, 0, []string{"a"}, true, false},
		{"zero policy waits for one", Policy{}, time.Hour, nil, false, false},
		{"min receivers not met", Policy{MinReceivers: 3}, time.Second, []string{"a", "b"}, false, false},
		{"min receivers met", Policy{MinReceivers: 2}, time.Second, []string{"a", "b"}, true, false},
		{"min wait holds", Policy{MinReceivers: 1, MinWait: 5 * time.Second}, time.Second, []string{"a"}, false, false},
		{"max wait starts short", Policy{MinReceivers: 4, MaxWait: 10 * time.Second}, 11 * time.Second, []string{"a"}, true, false},
		{"max wait with nobody", Policy{MinReceivers: 4, MaxWait: 10 * time.Second}, 11 * time.Second, nil, false, true},
		{"expected all present", Policy{Expected: []string{"n1", "n2"}}, 0, []string{"n2", "x", "n1"}, true, false},
		{"expected one missing", Policy{Expected: []string{"n1", "n2"}, MinReceivers: 1}, time.Second, []string{"n1", "x"}, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start, _, err := tc.p.decide(tc.waited, tc.names)
			if start != tc.start || (err != nil) != tc.wantErr {
				t.Errorf("decide = %v, %v; want %v, error %v", start, err, tc.start, tc.wantErr)
			}
		})
	}
}

// TestPacer books packets against a synthetic clock: a steady sender is
// held to the rate, one that fell behind catches up on at most
// pacerBurst of lost time, and long idle time is not sent as a burst.
func TestPacer(t *testing.T) {
	const rate = 8e6 // bit/s: 1,000 bytes take 1 ms
	t0 := time.Unix(1000, 0)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

	p := &pacer{rate: rate, next: t0}
	var ahead []float64
	for range 3 {
		ahead = append(ahead, ms(p.reserve(t0, 1000)))
	}
	if d := cmp.Diff([]float64{1, 2, 3}, ahead); d != "" {
		t.Errorf("steady booking at one instant, ms ahead (-want +got):\n%s", d)
	}

	// Descheduled for 10 ms (less than pacerBurst): the next 10 ms of
	// data may go at once, then the rate holds again.
	p = &pacer{rate: rate, next: t0}
	now := t0.Add(10 * time.Millisecond)
	free := 0
	for p.reserve(now, 1000) <= 0 {
		free++
	}
	if free != 10 {
		t.Errorf("after a 10 ms stall, %d packets of 1 ms went without waiting, want 10", free)
	}

	// Idle for a second: only pacerBurst of credit.
	p = &pacer{rate: rate, next: t0}
	now = t0.Add(time.Second)
	free = 0
	for p.reserve(now, 1000) <= 0 {
		free++
	}
	if want := int(pacerBurst / time.Millisecond); free != want {
		t.Errorf("after a second idle, %d packets went without waiting, want %d (pacerBurst)", free, want)
	}
}

func TestRateControl(t *testing.T) {
	r := &rateControl{max: 100, min: 10, cur: 100, threshold: 0.1}
	var got []int
	for _, l := range [][]float64{{0.5, 0.5, 0}, {0.5, 0.5, 0}, {0.2, 0, 0}, {0, 0}, {}, {0.9}} {
		got = append(got, int(r.adjust(l)))
	}
	if diff := cmp.Diff([]int{70, 49, 59, 69, 69, 48}, got); diff != "" {
		t.Errorf("rates (-want +got):\n%s", diff)
	}
}

// exportStream builds a small image and exports its stream to a file.
func exportStream(t *testing.T, files int, size int) (src, path, digest string) {
	t.Helper()
	dir := t.TempDir()
	src = filepath.Join(dir, "src")
	os.MkdirAll(filepath.Join(src, "sub"), 0o755)
	rng := mrand.New(mrand.NewPCG(7, 9))
	for i := 0; i < files; i++ {
		b := make([]byte, rng.IntN(size))
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		os.WriteFile(filepath.Join(src, "sub", fmt.Sprintf("f%03d", i)), b, 0o640)
	}
	os.Symlink("sub/f000", filepath.Join(src, "link"))
	s, err := store.Open(filepath.Join(dir, "data"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ImportDir(context.Background(), src, "img", store.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(dir, "img.tar.zst")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v, err := s.Export(context.Background(), "img", f, stream.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return src, path, v.Info.ManifestDigest
}

// testNetns makes a private network namespace with lo up and
// multicast-capable, so tests never send on a real network, and returns
// a function that runs fn on a goroutine whose thread lives in it (the
// sockets Send and Receive open before they start goroutines stay
// there).
func testNetns(t *testing.T) (ifname string, in func(fn func())) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip (iproute2) is not installed")
	}
	var b [3]byte
	rand.Read(b[:])
	ns := fmt.Sprintf("gcmc%x", b)
	for _, args := range [][]string{{"netns", "add", ns}, {"-n", ns, "link", "set", "lo", "up"}, {"-n", ns, "link", "set", "lo", "multicast", "on"}} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
		if args[0] == "netns" {
			t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		}
	}
	return "lo", func(fn func()) {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		fd, err := unix.Open("/var/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			panic(err)
		}
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			panic(err)
		}
		unix.Close(fd)
		fn()
	}
}

// inject plays a stranger on the link: once it hears the session
// announced it sends garbage, another session's shards and this
// session's shards with a corrupted byte to the data group, until ctx
// ends. It returns how many packets it sent.
func inject(ctx context.Context, t *testing.T, ifname, annAddr string) int {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		t.Error(err)
		return 0
	}
	ac, err := joinGroup(ifi, annAddr)
	if err != nil {
		t.Error(err)
		return 0
	}
	defer ac.Close()
	buf := make([]byte, MaxPacket)
	var h header
	var a announce
	for ctx.Err() == nil {
		ac.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, _, _, err := ac.ReadFrom(buf)
		if err != nil {
			continue
		}
		var body []byte
		if h, body, err = parseHeader(buf[:n]); err == nil {
			if a, err = parseAnnounce(body); err == nil {
				break
			}
		}
	}
	out, err := openSendConn(ifname, 1, true)
	if err != nil {
		t.Error(err)
		return 0
	}
	defer out.Close()
	dst := &net.UDPAddr{IP: a.dataGroup.AsSlice(), Port: int(a.dataPort)}
	sent := 0
	payload := make([]byte, a.blockSize)
	for i := 0; ctx.Err() == nil; i++ {
		rand.Read(payload)
		d := dataPacket{pass: 1, group: uint32(i % 40), shard: uint16(i % 64), payload: payload}
		var p []byte
		switch i % 3 {
		case 0: // noise
			p = append([]byte(nil), payload[:100]...)
		case 1: // another session's shard
			p = marshalData(nil, h.session+1, &d)
		case 2: // this session's shard, corrupted in flight
			p = marshalData(nil, h.session, &d)
			p[len(p)/2] ^= 0x40
		}
		if _, err := out.WriteTo(p, nil, dst); err == nil {
			sent++
		}
		time.Sleep(time.Millisecond)
	}
	return sent
}

// TestSendReceiveLoopback runs a sender and three receivers in this
// process with multicast loopback on a private group and port, with a
// stranger injecting garbage, foreign and corrupted packets, and checks
// every target with the fidelity oracle and that the strays were
// counted, not used.
func TestSendReceiveLoopback(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the fidelity oracle and extraction of owners need root")
	}
	ifname, in := testNetns(t)
	src, path, digest := exportStream(t, 40, 200_000)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	port := 20000 + mrand.IntN(20000)
	ann := fmt.Sprintf("239.255.71.%d:%d", 100+mrand.IntN(100), port)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var events []Event
	var mu sync.Mutex
	var sres *SendResult
	var serr error
	var wg sync.WaitGroup
	wg.Add(1)
	go in(func() {
		defer wg.Done()
		sres, serr = Send(ctx, SenderConfig{Interface: ifname, Stream: f, Size: fi.Size(), Digest: digest, Image: "img", Version: 1,
			MaxBitrate: 50e6, DataGroup: fmt.Sprintf("239.255.73.%d", 1+mrand.IntN(200)), DataPort: port + 1, AnnounceAddr: ann,
			Loopback: true, Policy: Policy{MinReceivers: 3},
			Events: func(e Event) { mu.Lock(); events = append(events, e); mu.Unlock() }})
	})
	injectCtx, stopInject := context.WithCancel(ctx)
	injected := 0
	injectDone := make(chan struct{})
	go in(func() {
		defer close(injectDone)
		injected = inject(injectCtx, t, ifname, ann)
	})
	targets := make([]string, 3)
	errs := make([]error, 3)
	results := make([]*Result, 3)
	for i := range targets {
		targets[i] = filepath.Join(t.TempDir(), "target")
		wg.Add(1)
		go in(func() {
			defer wg.Done()
			results[i], errs[i] = Receive(ctx, ReceiverConfig{Interface: ifname, Target: targets[i], Name: fmt.Sprintf("r%d", i), Image: "img",
				AnnounceAddr: ann, JoinTimeout: 20 * time.Second})
		})
	}
	wg.Wait()
	stopInject()
	<-injectDone
	if serr != nil {
		t.Fatalf("send: %v", serr)
	}
	for i, err := range errs {
		if err != nil {
			t.Errorf("receiver %d: %v", i, err)
		} else if injected > 30 && results[i].Stray == 0 {
			t.Errorf("receiver %d counted no stray packets; %d were injected", i, injected)
		}
	}
	if sres.Done() != 3 {
		t.Errorf("sender counts %d receivers done: %+v", sres.Done(), sres.Receivers)
	}
	for _, target := range targets {
		testtree.Oracle(t, src, target)
	}
	kinds := map[string]int{}
	for _, e := range events {
		kinds[e.Kind]++
	}
	if kinds["registered"] != 3 || kinds["done"] != 3 || kinds["start"] != 1 {
		t.Errorf("events %v", kinds)
	}
	if t.Failed() {
		for _, e := range events {
			t.Logf("%s %s %s %d %s", e.Time.Format("05.000"), e.Kind, e.Receiver, e.Bytes, e.Message)
		}
	}
}

// TestReceiverRefusesOtherVersion: a receiver that insists on a version
// never joins another's session and says what it saw.
func TestReceiverRefusesOtherVersion(t *testing.T) {
	ifname, in := testNetns(t)
	_, path, digest := exportStream(t, 3, 1000)
	f, _ := os.Open(path)
	defer f.Close()
	fi, _ := f.Stat()
	port := 20000 + mrand.IntN(20000)
	ann := fmt.Sprintf("239.255.71.%d:%d", 100+mrand.IntN(100), port)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go in(func() {
		Send(ctx, SenderConfig{Interface: ifname, Stream: f, Size: fi.Size(), Digest: digest, Image: "img", Version: 1,
			DataPort: port + 1, AnnounceAddr: ann, Loopback: true, Policy: Policy{MinReceivers: 1}})
	})
	target := filepath.Join(t.TempDir(), "t")
	var err error
	done := make(chan struct{})
	go in(func() {
		defer close(done)
		_, err = Receive(ctx, ReceiverConfig{Interface: ifname, Target: target, Image: "img", Version: 2, AnnounceAddr: ann, JoinTimeout: 2 * time.Second})
	})
	<-done
	if !errors.Is(err, ErrNoSession) || !strings.Contains(err.Error(), "img@1") {
		t.Fatalf("receive for img@2 against a session for img@1: %v", err)
	}
	if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("target was created by a refused receive")
	}
}
