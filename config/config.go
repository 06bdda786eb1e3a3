// Package config loads goldcast.yaml, the file that configures a goldcast
// server and declares the nodes it images and the groups they belong to.
//
// The types in this package are the documentation of the file format: every
// field carries the YAML key it is read from and says what it means. Load
// reads a file, rejects unknown keys, fills in defaults and validates the
// result, reporting every problem it finds with the file, line and field it
// concerns. ExpandHosts expands the host range expressions (node[001-032])
// that node names and group memberships are written with, and
// Config.ExpandedNodes and Config.NodesUsingImage answer the questions the
// rest of the server asks of a loaded configuration.
package config

// Defaults filled in by Load and Default for settings left out of the file.
const (
	// DefaultListen is the address of the HTTP API when server.listen is
	// not set.
	DefaultListen = ":8080"
	// DefaultRsyncListen is the address of the rsync daemon when
	// server.rsync_listen is not set.
	DefaultRsyncListen = ":873"
	// DefaultPriority is the priority of a group that does not set one.
	DefaultPriority = 50
)

// Boot is what a node does the next time it network-boots.
type Boot string

// The boot modes a node may be in.
const (
	// BootInstall reimages the node from its image, then boots it.
	BootInstall Boot = "install"
	// BootLocal boots the node from its local disk. It is the default.
	BootLocal Boot = "local"
	// BootRescue boots the node into a rescue environment without touching
	// its disks.
	BootRescue Boot = "rescue"
)

// Transport is how a node fetches its image when it installs.
type Transport string

// The transports an image can be delivered with.
const (
	// TransportRsync copies the image from the server's rsync daemon. It is
	// the default.
	TransportRsync Transport = "rsync"
	// TransportHTTP downloads the image from the HTTP API.
	TransportHTTP Transport = "http"
	// TransportMulticast receives the image in a multicast session shared
	// with other installing nodes.
	TransportMulticast Transport = "multicast"
	// TransportTorrent fetches the image peer to peer from the server and
	// other installing nodes.
	TransportTorrent Transport = "torrent"
)

// boots and transports list the valid values, in the order error messages
// name them.
func boots() []Boot { return []Boot{BootInstall, BootLocal, BootRescue} }

func transports() []Transport {
	return []Transport{TransportRsync, TransportHTTP, TransportMulticast, TransportTorrent}
}

// Config is the whole of goldcast.yaml. Every section is optional; an empty
// file is a valid configuration with no nodes and no groups.
type Config struct {
	// Server configures the goldcast server's own listeners and access.
	Server Server `yaml:"server"`
	// Nodes declares the machines goldcast images. An entry may declare
	// many machines at once by giving a host range as its name.
	Nodes []Node `yaml:"nodes"`
	// Groups declares named sets of nodes that share an image, overrides
	// and variables.
	Groups []Group `yaml:"groups"`
	// Overrides names global override trees, laid over the image of every
	// node before its groups' and its own overrides.
	Overrides []string `yaml:"overrides"`
}

// Server is the server section of goldcast.yaml.
type Server struct {
	// Listen is the TCP address, host:port, the HTTP API listens on. An
	// empty host listens on every interface. Default ":8080".
	Listen string `yaml:"listen"`
	// RsyncListen is the TCP address, host:port, the rsync daemon serving
	// images listens on. Default ":873".
	RsyncListen string `yaml:"rsync_listen"`
	// AllowNetworks lists networks, in CIDR notation such as 10.0.0.0/8,
	// whose clients may read images without an API token. Writes always
	// need a token. The address part must have no bits set beyond the
	// prefix length.
	AllowNetworks []string `yaml:"allow_networks"`
	// TFTPListen is the UDP address, host:port, the TFTP server handing
	// out iPXE binaries listens on, such as ":69". Empty turns TFTP off.
	TFTPListen string `yaml:"tftp_listen"`
	// BootDir is the TFTP root holding undionly.kpxe, ipxe.efi and
	// snponly.efi. Empty means the binaries of Debian's ipxe package.
	BootDir string `yaml:"boot_dir"`
	// UnknownNodes says what a machine whose MAC no node record holds gets
	// when it network-boots: "menu" (the default) shows a boot menu and
	// leaves the machine alone; "register" boots the goldcast initramfs,
	// which reports the machine's hardware, and records it as a node
	// named discovered-<mac> (boot action local) for the admin to adopt.
	UnknownNodes string `yaml:"unknown_nodes"`
	// DHCP configures goldcast's own DHCP server.
	DHCP DHCP `yaml:"dhcp"`
}

// DHCP configures the DHCP server. Command-line flags override each field.
type DHCP struct {
	// Mode is "full" (hand out addresses and boot information), "proxy"
	// (boot information only, beside another DHCP server) or "off" (the
	// default).
	Mode string `yaml:"mode"`
	// Interface is the network interface DHCP serves; its first IPv4
	// address is the server identifier and the boot server.
	Interface string `yaml:"interface"`
	// Range is the full-mode pool, "FIRST-LAST", such as
	// "10.0.0.100-10.0.0.199". Node records' ips are reservations and
	// should lie outside it.
	Range string `yaml:"range"`
	// Router is the default gateway handed out in full mode.
	Router string `yaml:"router"`
	// DNS lists the name servers handed out in full mode.
	DNS []string `yaml:"dns"`
	// LeaseTime is how long a full-mode lease lasts, as a Go duration
	// ("1h", "30m"); empty means one hour.
	LeaseTime string `yaml:"lease_time"`
	// SystemImagerOptions, when true, adds SystemImager's option 140 (the
	// image server's address: this server) to full-mode answers, for
	// installers that read it.
	SystemImagerOptions bool `yaml:"systemimager_options"`
}

// Node declares one machine, or, when Name is a host range, several machines
// that share every other setting.
type Node struct {
	// Name is the node's host name. It may be a host range expression
	// (see ExpandHosts), such as node[001-032] or "a,b", which declares one
	// node per name. Required; each name may be declared only once.
	Name string `yaml:"name"`
	// MACs are the hardware addresses of the node's network interfaces,
	// used to recognise it when it network-boots. Any form net.ParseMAC
	// accepts is allowed; Load rewrites them to lower-case, colon-separated
	// form. When Name declares several nodes, MACs must be empty or hold
	// exactly one address per node, given in the order of the names. A MAC
	// may belong to one node only.
	MACs []string `yaml:"macs"`
	// IPs are the node's IP addresses, IPv4 or IPv6, which it is given when
	// it boots. Load rewrites them to canonical form. When Name declares
	// several nodes, IPs must be empty or hold exactly one address per
	// node, in the order of the names. An IP may belong to one node only.
	IPs []string `yaml:"ips"`
	// UUID is the machine's SMBIOS system UUID, which iPXE sends as
	// ${uuid}: it finds the node when the booting NIC's MAC is not one of
	// MACs (a board with many ports, a replaced NIC). Only for an entry
	// declaring one node.
	UUID string `yaml:"uuid"`
	// Image is the image the node is installed with: an image name,
	// optionally followed by "@" and a version number (rocky9@3) to pin
	// that version; without a version the newest is used. When empty, the
	// node uses the image of its most important group that sets one.
	Image string `yaml:"image"`
	// Groups names the groups the node belongs to, in addition to any group
	// whose Nodes range includes it. Each must be declared under groups.
	Groups []string `yaml:"groups"`
	// Boot is what the node does when it next network-boots: install,
	// local or rescue. Default local.
	Boot Boot `yaml:"boot"`
	// Transport is how the node fetches its image when it installs: rsync,
	// http, multicast or torrent. Default rsync.
	Transport Transport `yaml:"transport"`
	// KernelArgs are extra arguments appended to the kernel command line
	// of the installer and rescue environments, such as "console=ttyS0".
	KernelArgs string `yaml:"kernel_args"`
	// Overrides names override trees copied over the image when the node
	// is installed, after those of its groups, in the order given.
	Overrides []string `yaml:"overrides"`
	// Vars are variables made available to the node's install scripts and
	// templates. They take precedence over variables of the same name set
	// by its groups.
	Vars map[string]string `yaml:"vars"`
	// Install says how `goldcast install` treats the node's disks and
	// what the machine does afterwards.
	Install Install `yaml:"install"`
}

// Install holds a node's install settings.
type Install struct {
	// Disk chooses the disk to install on: a device path ("/dev/sda",
	// "/dev/disk/by-id/..."), a size rule ("size>=100G", "smallest",
	// "largest"), or empty for the first non-removable disk.
	Disk string `yaml:"disk"`
	// Wipe lets the install overwrite a disk that already holds a
	// partition table or filesystem. Without it such a disk is refused
	// and the install stops before touching it.
	Wipe bool `yaml:"wipe"`
	// PostAction is what the machine does after a successful install:
	// reboot (the default), poweroff, shell (a rescue shell on the
	// console) or kexec (boot the installed kernel without a firmware
	// round trip).
	PostAction string `yaml:"post_action"`
	// Layout names a disk layout file in DATA/layouts (NAME.yaml or
	// NAME.json; docs/install-disks.md) used instead of the layout
	// captured from the golden client: partition sizes in MiB, units,
	// percent or grow, types, flags and filesystems.
	Layout string `yaml:"layout"`
}

// PostActions lists the valid Install.PostAction values.
func PostActions() []string { return []string{"reboot", "poweroff", "shell", "kexec"} }

// Group declares a named set of nodes sharing settings. A node belongs to a
// group when the node lists it in its groups, or when the group's Nodes
// range includes the node's name.
type Group struct {
	// Name identifies the group. Required and unique; letters, digits, ".",
	// "_" and "-", not starting with "." or "-".
	Name string `yaml:"name"`
	// Priority ranks the group against the other groups of a node: the
	// lower the number, the more important the group, and the settings of
	// more important groups win. Groups with equal priority rank in the
	// order they are declared. Default 50.
	Priority int `yaml:"priority"`
	// Image is the image used by member nodes that do not set their own,
	// in the same NAME or NAME@VERSION form as Node.Image.
	Image string `yaml:"image"`
	// Overrides names override trees copied over the image when a member
	// node is installed, in the order given.
	Overrides []string `yaml:"overrides"`
	// Nodes is a host range expression (see ExpandHosts), such as
	// node[001-128], naming nodes that belong to the group without listing
	// it themselves. Names that match no declared node are ignored.
	// Optional.
	Nodes string `yaml:"nodes"`
	// Vars are variables made available to the install scripts and
	// templates of member nodes.
	Vars map[string]string `yaml:"vars"`
}

// Default returns an empty configuration with every default filled in: the
// configuration an empty goldcast.yaml loads as.
func Default() *Config {
	c := &Config{}
	c.fillDefaults(func(int) bool { return false })
	return c
}

// fillDefaults sets every setting left unset to its default. hasPriority
// reports whether the file set the priority of c.Groups[i]; a priority the
// file left out is otherwise indistinguishable from an explicit 0.
func (c *Config) fillDefaults(hasPriority func(i int) bool) {
	if c.Server.Listen == "" {
		c.Server.Listen = DefaultListen
	}
	if c.Server.RsyncListen == "" {
		c.Server.RsyncListen = DefaultRsyncListen
	}
	for i := range c.Nodes {
		n := &c.Nodes[i]
		if n.Boot == "" {
			n.Boot = BootLocal
		}
		if n.Transport == "" {
			n.Transport = TransportRsync
		}
	}
	for i := range c.Groups {
		if !hasPriority(i) {
			c.Groups[i].Priority = DefaultPriority
		}
	}
}
