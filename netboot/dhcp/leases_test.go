package dhcp

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"
)

func TestFileLeaseStoreDurable(t *testing.T) {
	hour := t0().Add(time.Hour)
	type op struct {
		put    *Lease
		delete string
	}
	put := func(l Lease) op { return op{put: &l} }
	tests := []struct {
		name string
		ops  []op
		want []leaseView
	}{
		{name: "empty"},
		{name: "put", ops: []op{put(lease(macA, "10.0.0.100", hour))}, want: []leaseView{{MAC: macA, IP: "10.0.0.100", Expiry: hour}}},
		{
			name: "put replaces the MAC's lease",
			ops:  []op{put(lease(macA, "10.0.0.100", hour)), put(Lease{MAC: mustMAC(macA), IP: mustAddr("10.0.0.101"), Hostname: "n1", Expiry: hour.Add(time.Hour)})},
			want: []leaseView{{MAC: macA, IP: "10.0.0.101", Hostname: "n1", Expiry: hour.Add(time.Hour)}},
		},
		{
			name: "delete",
			ops:  []op{put(lease(macA, "10.0.0.100", hour)), put(lease(macB, "10.0.0.101", hour)), {delete: macA}, {delete: macC}},
			want: []leaseView{{MAC: macB, IP: "10.0.0.101", Expiry: hour}},
		},
		{
			name: "expired leases are kept",
			ops:  []op{put(lease(macA, "10.0.0.100", t0().Add(-time.Hour)))},
			want: []leaseView{{MAC: macA, IP: "10.0.0.100", Expiry: t0().Add(-time.Hour)}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "leases.jsonl")
			st, err := OpenFileLeaseStore(path)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range tc.ops {
				if o.put != nil {
					err = st.Put(*o.put)
				} else {
					err = st.Delete(mustMAC(o.delete))
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if diff := cmp.Diff(tc.want, leaseViews(t, st)); diff != "" {
				t.Errorf("before reopening (-want +got):\n%s", diff)
			}
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
			re, err := OpenFileLeaseStore(path)
			if err != nil {
				t.Fatal(err)
			}
			defer re.Close()
			if diff := cmp.Diff(tc.want, leaseViews(t, re)); diff != "" {
				t.Errorf("after reopening (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFileLeaseStoreDamage(t *testing.T) {
	good := `{"op":"put","mac":"02:00:00:00:00:0a","ip":"10.0.0.100","expiry":"2026-03-01T13:00:00Z"}` + "\n"
	tests := []struct {
		name    string
		content string
		want    []leaseView
		wantErr bool
	}{
		{name: "torn last line is dropped", content: good + `{"op":"put","mac":"02:00:00:00:0`,
			want: []leaseView{{MAC: macA, IP: "10.0.0.100", Expiry: t0().Add(time.Hour)}}},
		{name: "damaged line inside the file is an error", content: "garbage\n" + good, wantErr: true},
		{name: "unknown op is an error", content: `{"op":"frob","mac":"02:00:00:00:00:0a"}` + "\n", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "leases.jsonl")
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			st, err := OpenFileLeaseStore(path)
			if (err != nil) != tc.wantErr {
				t.Fatalf("open: %v, want error %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			defer st.Close()
			if diff := cmp.Diff(tc.want, leaseViews(t, st)); diff != "" {
				t.Errorf("leases (-want +got):\n%s", diff)
			}
			// The torn line is gone from the file, so appends start clean.
			if err := st.Put(lease(macB, "10.0.0.101", t0())); err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if n := bytes.Count(data, []byte("\n")); n != 2 {
				t.Errorf("file has %d lines, want 2:\n%s", n, data)
			}
		})
	}
}

func TestFileLeaseStoreLockedAndCompacted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "leases.jsonl")
	st, err := OpenFileLeaseStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if second, err := OpenFileLeaseStore(path); err == nil {
		second.Close()
		t.Fatal("a second open of a store in use succeeded")
	}
	for i := range compactSlack + 10 {
		if err := st.Put(lease(macA, "10.0.0.100", t0().Add(time.Duration(i)*time.Second))); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(data, []byte("\n")); n > compactSlack {
		t.Errorf("file has %d lines for one lease, want it compacted", n)
	}
	want := []leaseView{{MAC: macA, IP: "10.0.0.100", Expiry: t0().Add((compactSlack + 9) * time.Second)}}
	if diff := cmp.Diff(want, leaseViews(t, st)); diff != "" {
		t.Errorf("leases (-want +got):\n%s", diff)
	}
}

// TestLeasesSurviveRestart acknowledges a lease, stops the server and
// its store, and checks that a new server over the reopened store knows
// the lease: the client keeps its address and others do not get it.
func TestLeasesSurviveRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "leases.jsonl")
	st, err := OpenFileLeaseStore(path)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(baseConfig(), Deps{Leases: st, Logger: quietLogger(), Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	ack, err := srv.Handle(msg(t, dhcpv4.MessageTypeRequest, macA, serverID("10.0.0.1"), requested("10.0.0.101")), clientFrom())
	if err != nil || ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("request: %v, %v", summarize(ack), err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	re, err := OpenFileLeaseStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer re.Close()
	want := []leaseView{{MAC: macA, IP: "10.0.0.101", Expiry: t0().Add(time.Hour)}}
	if diff := cmp.Diff(want, leaseViews(t, re)); diff != "" {
		t.Errorf("reopened leases (-want +got):\n%s", diff)
	}
	srv2, err := New(baseConfig(), Deps{Leases: re, Logger: quietLogger(), Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, mac := range []string{macA, macB, macC} {
		resp, err := srv2.Handle(msg(t, dhcpv4.MessageTypeDiscover, mac), clientFrom())
		if err != nil {
			t.Fatal(err)
		}
		got[mac] = resp.YourIPAddr.String()
	}
	wantOffers := map[string]string{macA: "10.0.0.101", macB: "10.0.0.100", macC: "10.0.0.102"}
	if diff := cmp.Diff(wantOffers, got); diff != "" {
		t.Errorf("offers after restart (-want +got):\n%s", diff)
	}
}

// TestFileLeaseStoreConcurrent puts and deletes from many goroutines at
// once, as the server's concurrent requests do: every call that returned
// nil is in the file, read back by a new store, and a call after Close
// fails.
func TestFileLeaseStoreConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "leases.jsonl")
	st, err := OpenFileLeaseStore(path)
	if err != nil {
		t.Fatal(err)
	}
	const clients = 300
	hour := t0().Add(time.Hour)
	macOf := func(i int) string { return fmt.Sprintf("02:00:00:00:%02x:%02x", i>>8, i&0xff) }
	var wg sync.WaitGroup
	errs := make(chan error, 2*clients)
	for i := range clients {
		wg.Go(func() {
			ip := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
			errs <- st.Put(Lease{MAC: mustMAC(macOf(i)), IP: ip, Expiry: hour})
			if i%3 == 0 {
				errs <- st.Delete(mustMAC(macOf(i)))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var want []leaseView
	for i := range clients {
		if i%3 != 0 {
			want = append(want, leaseView{MAC: macOf(i), IP: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}).String(), Expiry: hour})
		}
	}
	sort.Slice(want, func(i, j int) bool { return want[i].MAC < want[j].MAC })
	if diff := cmp.Diff(want, leaseViews(t, st)); diff != "" {
		t.Errorf("leases (-want +got):\n%s", diff)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(lease(macA, "10.0.0.1", hour)); err == nil {
		t.Error("Put after Close succeeded")
	}
	re, err := OpenFileLeaseStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer re.Close()
	if diff := cmp.Diff(want, leaseViews(t, re)); diff != "" {
		t.Errorf("reopened leases (-want +got):\n%s", diff)
	}
}
