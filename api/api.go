// Package api holds what the goldcast server and its clients agree on:
// routes, JSON bodies, and the framing of binary bodies. The server and
// the client never import each other; they meet here.
package api

import (
	"encoding/json"

	"github.com/goldcast/goldcast/images/manifest"

	"github.com/goldcast/goldcast/transport/treesync"
)

// Prefix is the root of every API route.
const Prefix = "/api/v1"

// TokenHeader carries the admin token ("Authorization: Bearer TOKEN" is
// accepted too).
const TokenHeader = "X-Goldcast-Token"

// Error is the body of every failed request.
type Error struct {
	Error string `json:"error"`
}

// TreeRequest asks for listings of directories of a version
// (POST /images/{ref}/tree).
type TreeRequest struct {
	Paths []manifest.WirePath `json:"paths"`
}

// TreeResponse answers a TreeRequest.
type TreeResponse struct {
	// Root is the version's tree digest (treesync.Index.RootDigest).
	Root     string             `json:"root"`
	Listings []treesync.Listing `json:"listings"`
}

// EntriesRequest asks for manifest lines of a version
// (POST /images/{ref}/entries); the answer is canonical manifest lines,
// one per entry, as text. With Subtree, everything below each path comes
// too.
type EntriesRequest struct {
	Paths   []manifest.WirePath `json:"paths"`
	Subtree bool                `json:"subtree,omitempty"`
}

// CaptureRequest opens a capture session (POST /captures).
type CaptureRequest struct {
	Image    string          `json:"image"`
	Host     string          `json:"host"`
	Root     string          `json:"root"`
	Comment  string          `json:"comment,omitempty"`
	Excludes []string        `json:"excludes,omitempty"`
	Layout   json.RawMessage `json:"layout,omitempty"`
}

// CaptureSession is an open capture.
type CaptureSession struct {
	ID    string `json:"id"`
	Image string `json:"image"`
	// BaseVersion is the version the capture is compared with (0: the
	// image is new and the capture travels as a full stream).
	BaseVersion int    `json:"base_version"`
	BaseDigest  string `json:"base_digest,omitempty"`
	// BaseTree is the base version's tree digest for treesync.
	BaseTree string `json:"base_tree,omitempty"`
}

// ManifestPatch turns the base version's manifest into the captured one
// (POST /captures/{id}/manifest): Upserts are canonical manifest lines
// that replace or add entries, Removes are paths deleted with their
// subtrees. Digest is the captured manifest's digest; the server refuses a
// patch whose result differs.
type ManifestPatch struct {
	Digest  string              `json:"digest"`
	Upserts []string            `json:"upserts"`
	Removes []manifest.WirePath `json:"removes"`
}

// Need is one file whose content the server does not have.
type Need struct {
	Path manifest.WirePath `json:"path"`
	// Basis is a path of the base version whose content the delta may
	// refer to ("" when the file must be sent whole).
	Basis manifest.WirePath `json:"basis,omitempty"`
}

// PatchResult answers a ManifestPatch with the content still needed.
type PatchResult struct {
	Need []Need `json:"need"`
}

// SignatureRequest asks for rsync signatures of base-version files
// (POST /captures/{id}/signatures); the answer is a frame stream.
type SignatureRequest struct {
	Paths []manifest.WirePath `json:"paths"`
}

// Published reports a published version.
type Published struct {
	Image   string `json:"image"`
	Version int    `json:"version"`
	Digest  string `json:"digest"`
	// Unchanged is set when the capture equals the base version and
	// nothing was published.
	Unchanged bool  `json:"unchanged,omitempty"`
	Reused    int   `json:"reused"`
	BytesIn   int64 `json:"bytes_in"`
}

// Frame kinds in binary bodies.
const (
	// KindFull carries a file's whole content.
	KindFull byte = 'F'
	// KindDelta carries a delta op stream against a basis file.
	KindDelta byte = 'D'
	// KindSignature carries an rsync signature of a file.
	KindSignature byte = 'S'
)

// ServerInfo describes the server (GET /server).
type ServerInfo struct {
	// RsyncAddr is the rsync daemon's listen address ("" when off).
	RsyncAddr string `json:"rsync_addr,omitempty"`
}

// NodeTokenHeader carries a node's own token on /nodes/{node}/ routes.
const NodeTokenHeader = "X-Goldcast-Node-Token"

// BootReport is what a booted goldcast initramfs tells the server about its
// machine: the JSON body of POST SERVER/api/v1/boot/report, sent with the
// node's token in the X-Goldcast-Node-Token header. Its first seven fields
// are those the server's boot report handler reads; the others are extra
// facts a server may ignore.
type BootReport struct {
	// Node is the node's name, from goldcast.node on the kernel command line.
	Node string `json:"node"`
	// MACs are the hardware addresses of the machine's Ethernet interfaces
	// (lower case, colon separated), in interface index order.
	MACs []string `json:"macs"`
	// CPUs is the number of online CPUs.
	CPUs int `json:"cpus"`
	// MemoryKB is the usable memory (MemTotal of /proc/meminfo) in KiB.
	MemoryKB int64 `json:"memory_kb"`
	// Disks are the names of the machine's disks in /sys/block ("vda",
	// "sda", "nvme0n1"), sorted; loop, RAM, device-mapper, MD, NBD, floppy
	// and optical devices and empty ones are left out.
	Disks []string `json:"disks"`
	// Kernel is the running kernel's release (uname -r).
	Kernel string `json:"kernel"`
	// BootID is the kernel's random identifier of this boot
	// (/proc/sys/kernel/random/boot_id).
	BootID string `json:"boot_id,omitempty"`

	// Machine is the hardware name (uname -m, "x86_64").
	Machine string `json:"machine,omitempty"`
	// DiskBytes maps each of Disks to its size in bytes.
	DiskBytes map[string]int64 `json:"disk_bytes,omitempty"`
	// Interface is the interface InitMain configured ("eth0").
	Interface string `json:"interface,omitempty"`
	// Address is the address DHCP gave that interface, with its prefix
	// length ("10.0.2.15/24").
	Address string `json:"address,omitempty"`
}
