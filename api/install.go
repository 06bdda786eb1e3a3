package api

import (
	"encoding/json"
	"time"
)

// The install routes, below Prefix. Each takes the node's token
// (NodeTokenHeader) or the admin token.
const (
	// InstallPlanPath (GET) returns the node's InstallPlan.
	InstallPlanPath = "/nodes/{node}/install"
	// ProgressPath (POST) takes a Progress report from an installing node.
	ProgressPath = "/nodes/{node}/progress"
	// HealthPath (POST) takes the HealthReport of an installed node's
	// first boot.
	HealthPath = "/nodes/{node}/health"
	// ScriptPath (GET) returns one install script's contents.
	ScriptPath = "/nodes/{node}/scripts/{phase}/{name}"
	// NodeStatesPath (GET) returns every node's NodeState (admin token or
	// an allowed network); ?node=NAME (repeatable) narrows it.
	NodeStatesPath = "/status"
)

// Node states, in the order an install goes through them.
const (
	// StateBooted: the goldcast initramfs reported the machine's hardware.
	StateBooted = "booted"
	// StateInstalling: an install is under way (see NodeState.Stage).
	StateInstalling = "installing"
	// StateInstalled: the install finished; the node boots from its disk.
	StateInstalled = "installed"
	// StateFailed: the install stopped with an error; the disk is left for
	// the admin and the boot action stays install.
	StateFailed = "failed"
	// StateHealthy: the installed system booted and reported itself.
	StateHealthy = "healthy"
	// StateUnhealthy: the installed system did not report within the
	// server's health timeout.
	StateUnhealthy = "unhealthy"
)

// Install stages, reported in Progress.Stage in this order (pre-install
// and post-install only when the node has such scripts).
const (
	StageStart       = "start"
	StagePreInstall  = "pre-install"
	StagePartition   = "partition"
	StageMkfs        = "mkfs"
	StageTransfer    = "transfer"
	StageSysconf     = "sysconf"
	StageBootloader  = "bootloader"
	StagePostInstall = "post-install"
	// StageDone ends a successful install (State installed); the post
	// action follows.
	StageDone = "done"
	// StageFailed ends a failed one (State failed).
	StageFailed = "failed"
)

// Install scripts' phases: the directories under DATA/scripts.
const (
	PhasePreInstall  = "pre-install"
	PhasePostInstall = "post-install"
)

// InstallPlan is everything `goldcast install` needs to know about a node
// besides the node plan (GET /nodes/{node}/plan) and the image stream.
type InstallPlan struct {
	// Node is the node's name; Hostname the host name it gets.
	Node     string `json:"node"`
	Hostname string `json:"hostname"`
	// Image and Version are the image version to install; ImageDigest is
	// its manifest digest and PlanDigest the digest of the node's
	// effective tree (image plus overrides).
	Image       string `json:"image"`
	Version     int    `json:"version"`
	ImageDigest string `json:"image_digest"`
	PlanDigest  string `json:"plan_digest"`
	// Transport is how the tree travels: http (default), rsync, multicast
	// or torrent.
	Transport string `json:"transport"`
	// Disk chooses the target disk: a device path, a size rule, or empty
	// for the first non-removable disk (see client/disks).
	Disk string `json:"disk,omitempty"`
	// Wipe allows overwriting a disk that holds a partition table or a
	// filesystem.
	Wipe bool `json:"wipe,omitempty"`
	// PostAction is what the machine does after a successful install:
	// reboot (default), poweroff, shell or kexec.
	PostAction string `json:"post_action"`
	// Layout is the disk layout captured from the golden client (the
	// image's image.json "disk_layout", a client/disklayout.Layout); null
	// when the image has none.
	Layout json.RawMessage `json:"layout,omitempty"`
	// LayoutOverride is the admin's layout for this node (a
	// client/disks override), used instead of Layout when set.
	LayoutOverride json.RawMessage `json:"layout_override,omitempty"`
	// KernelArgs are the node's extra kernel arguments, for the installed
	// system's boot loader too.
	KernelArgs string `json:"kernel_args,omitempty"`
	// Vars are the node's variables (group variables merged under its
	// own), given to scripts as GOLDCAST_VAR_<NAME> environment variables.
	Vars map[string]string `json:"vars,omitempty"`
	// Groups are the node's groups in priority order.
	Groups []string `json:"groups,omitempty"`
	// Scripts are the pre- and post-install scripts that apply to the
	// node, each phase in the order they run.
	Scripts []InstallScript `json:"scripts,omitempty"`
}

// InstallScript is one admin-supplied executable an install runs.
type InstallScript struct {
	// Phase is PhasePreInstall (run in the initramfs before the disk is
	// touched) or PhasePostInstall (run chrooted into the installed tree).
	Phase string `json:"phase"`
	// Name is the file name under DATA/scripts/PHASE: NNclass.description,
	// such as 10all.ntp or 50compute.ib. The class is all, the image
	// name, the host name without its trailing digits, a group, or the
	// host name; scripts run in that class order, each class by number.
	Name string `json:"name"`
	// Class is the class the name carries.
	Class string `json:"class"`
	// SHA256 is the script's content digest, checked after download.
	SHA256 string `json:"sha256"`
}

// Progress is one report from an installing node. Nodes send one at each
// stage change and at least every 2 seconds during the transfer.
type Progress struct {
	// Stage is one of the Stage constants.
	Stage string `json:"stage"`
	// State is StateInstalling, or at the end StateInstalled or
	// StateFailed.
	State string `json:"state"`
	// Image and Version are the version being installed.
	Image   string `json:"image,omitempty"`
	Version int    `json:"version,omitempty"`
	// Percent is the whole transfer's progress by bytes, 0 to 100.
	Percent float64 `json:"percent,omitempty"`
	// Bytes and Total are the bytes moved so far and expected.
	Bytes int64 `json:"bytes,omitempty"`
	Total int64 `json:"total,omitempty"`
	// Rate is the recent transfer rate in bytes per second.
	Rate float64 `json:"rate,omitempty"`
	// ETASeconds is the expected time left in the transfer.
	ETASeconds float64 `json:"eta_seconds,omitempty"`
	// Message says what is happening, for people.
	Message string `json:"message,omitempty"`
	// Error is set when State is StateFailed: what went wrong.
	Error string `json:"error,omitempty"`
	// LogTail holds the last lines (up to 50) of the installer's log on
	// failure.
	LogTail []string `json:"log_tail,omitempty"`
	// BootID is the installer's kernel boot ID: reports of one install
	// attempt share it.
	BootID string `json:"boot_id,omitempty"`
}

// HealthReport is what an installed system sends once from its first
// boot.
type HealthReport struct {
	Hostname string `json:"hostname"`
	BootID   string `json:"boot_id"`
	Kernel   string `json:"kernel"`
	// Image and Version are the version the node was installed with
	// (from /etc/goldcast/installed.json).
	Image   string `json:"image"`
	Version int    `json:"version"`
}

// NodeState is a node's current state as the server tracks it.
type NodeState struct {
	Node    string    `json:"node"`
	State   string    `json:"state"`
	Stage   string    `json:"stage,omitempty"`
	Image   string    `json:"image,omitempty"`
	Version int       `json:"version,omitempty"`
	Percent float64   `json:"percent,omitempty"`
	Rate    float64   `json:"rate,omitempty"`
	ETA     float64   `json:"eta_seconds,omitempty"`
	Updated time.Time `json:"updated"`
	// Message is the last event's message.
	Message string `json:"message,omitempty"`
	// Hostname, BootID and Kernel are from the last health or boot
	// report.
	Hostname string `json:"hostname,omitempty"`
	BootID   string `json:"boot_id,omitempty"`
	Kernel   string `json:"kernel,omitempty"`
}
