package initramfs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/goldcast/goldcast/api"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"golang.org/x/sys/unix"
)

// Time limits of the steps InitMain takes.
const (
	// interfaceWait is how long InitMain waits for an Ethernet interface
	// to appear once the modules are loaded.
	interfaceWait = 30 * time.Second
	// carrierWait is how long it waits for the link to come up before
	// trying DHCP anyway.
	carrierWait = 10 * time.Second
	// dhcpWait bounds the whole DHCP exchange (nclient4 retries within).
	dhcpWait = 60 * time.Second
	// reportTries and reportBackoff: the report is sent up to reportTries
	// times, waiting reportBackoff, then twice that, and so on between
	// tries, unless the server refuses it (a 4xx answer).
	reportTries   = 5
	reportBackoff = 2 * time.Second
	// reportTimeout bounds one try.
	reportTimeout = 20 * time.Second
)

// The actions goldcast.action names.
const (
	actionPowerOff = "poweroff"
	actionInstall  = "install"
	actionReboot   = "reboot"
	actionShell    = "shell"
	actionRescue   = "rescue"
	// actionRegister reports an unknown machine's hardware, then powers
	// it off.
	actionRegister = "register"
)

// bootConfig is what InitMain reads from the kernel command line.
type bootConfig struct {
	Server string // goldcast.server: the API's base URL
	Node   string // goldcast.node
	Token  string // goldcast.token
	Action string // goldcast.action, "" meaning power off
}

// splitCmdline splits a kernel command line into parameters as the
// kernel does: at spaces outside double quotes, the quotes removed.
func splitCmdline(s string) []string {
	var out []string
	var cur strings.Builder
	inQuote, inWord := false, false
	for _, r := range s {
		switch {
		case r == '"':
			inQuote, inWord = !inQuote, true
		case !inQuote && (r == ' ' || r == '\t' || r == '\n'):
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out
}

// parseCmdline reads the goldcast.* parameters of a kernel command line
// (the last of repeated ones wins) and checks them.
func parseCmdline(cmdline string) (bootConfig, error) {
	var c bootConfig
	for _, p := range splitCmdline(cmdline) {
		key, value, _ := strings.Cut(p, "=")
		switch key {
		case "goldcast.server":
			c.Server = value
		case "goldcast.node":
			c.Node = value
		case "goldcast.token":
			c.Token = value
		case "goldcast.action":
			c.Action = value
		}
	}
	if c.Server == "" {
		return c, errors.New("kernel command line: no goldcast.server=URL")
	}
	u, err := url.Parse(c.Server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return c, fmt.Errorf("kernel command line: goldcast.server=%q is not an http or https URL", c.Server)
	}
	if c.Node == "" {
		return c, errors.New("kernel command line: no goldcast.node=NAME")
	}
	switch c.Action {
	case "", actionPowerOff, actionInstall, actionReboot, actionShell, actionRescue, actionRegister:
	default:
		return c, fmt.Errorf("kernel command line: unknown goldcast.action=%q (want install, poweroff, reboot, shell, rescue or register)", c.Action)
	}
	return c, nil
}

// consoleLog writes InitMain's progress lines, each stamped with the
// seconds since InitMain started.
type consoleLog struct {
	w     io.Writer
	start time.Time
}

func (l *consoleLog) printf(format string, args ...any) {
	fmt.Fprintf(l.w, "goldcast-init [%7.3f] %s\n", time.Since(l.start).Seconds(), fmt.Sprintf(format, args...))
}

// InitMain is the goldcast initramfs's init program: goldcast's main
// calls it, instead of running a command, when it runs as PID 1 or as
// /init (os.Getpid() == 1 || os.Args[0] == "/init"), with args its
// os.Args. The kernel gives /init the words of its command line it did
// not recognise as arguments; InitMain logs and otherwise ignores them.
// Its instructions come from /proc/cmdline (see the package
// documentation).
//
// It logs every step to /dev/console (or standard error if that cannot
// be opened) and
//
//  1. mounts proc on /proc, sysfs on /sys and devtmpfs on /dev;
//  2. loads the modules listed in ModuleListPath, in order, with
//     finit_module(2) (compressed ones as the package documentation
//     says); a module that fails to load is logged and skipped;
//  3. waits until the kernel's random number generator is ready, then
//     for the first Ethernet interface with a device behind it (by
//     interface index), brings it and lo up, waits for a carrier and
//     configures it by DHCP: address, default route, /etc/resolv.conf;
//  4. posts a Report of the machine to goldcast.server's ReportPath with
//     goldcast.token, retrying network errors and 5xx answers;
//  5. does what goldcast.action says: power the machine off (the
//     default; also for install, which the initramfs does not perform
//     yet) or reboot it with reboot(2), or, for shell and rescue, wait
//     until ctx is done (there is no shell to start).
//
// When it powers off or reboots InitMain does not return. It returns an
// error, after logging it, when a step fails (or the wait of shell ends
// with ctx). A PID 1 that then exits makes the kernel panic, which shows
// the error on the console and reboots after panic=N seconds if the
// command line sets that; a caller that would rather keep the machine
// up must block instead of exiting.
func InitMain(ctx context.Context, args []string, hooks Hooks) error {
	l := &consoleLog{w: os.Stderr, start: time.Now()}
	if con, err := os.OpenFile("/dev/console", os.O_WRONLY|unix.O_NOCTTY, 0); err == nil {
		defer con.Close()
		l.w = con
	}
	err := runInit(ctx, l, args, hooks)
	if err != nil {
		l.printf("FAILED: %v", err)
	}
	return err
}

// runInit is InitMain's work.
func runInit(ctx context.Context, l *consoleLog, args []string, hooks Hooks) error {
	l.printf("goldcast initramfs starting as pid %d, arguments %q", os.Getpid(), args)
	if err := os.Setenv("PATH", initPath); err != nil {
		return fmt.Errorf("set PATH: %w", err)
	}
	if err := mountFilesystems(l); err != nil {
		return err
	}
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return fmt.Errorf("read kernel command line: %w", err)
	}
	cfg, err := parseCmdline(string(cmdline))
	if err != nil {
		return err
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return fmt.Errorf("uname: %w", err)
	}
	kernel, machine := unix.ByteSliceToString(uts.Release[:]), unix.ByteSliceToString(uts.Machine[:])
	l.printf("node %s, server %s, action %s, kernel %s (%s)", cfg.Node, cfg.Server, orDefault(cfg.Action, actionPowerOff), kernel, machine)

	if err := loadModules(ctx, l, ModuleListPath); err != nil {
		return err
	}
	if err := waitForRandom(ctx, l); err != nil {
		return err
	}
	iface, err := waitForInterface(ctx, l, "/sys", interfaceWait)
	if err != nil {
		return err
	}
	addr, err := configureNetwork(ctx, l, iface, cfg.Node)
	if err != nil {
		return err
	}

	rep, err := collectFacts("/proc", "/sys")
	if err != nil {
		return err
	}
	rep.Node, rep.Kernel, rep.Machine = cfg.Node, kernel, machine
	rep.Interface, rep.Address = iface.Name, addr.String()
	l.printf("facts: %d CPUs, %d MiB of memory, MACs %s, disks %s", rep.CPUs, rep.MemoryKB/1024,
		strings.Join(rep.MACs, " "), orDefault(strings.Join(rep.Disks, " "), "none"))
	rp := reporter{client: httpClient(), log: l, tries: reportTries, backoff: reportBackoff}
	if err := rp.post(ctx, cfg.Server, cfg.Token, rep); err != nil {
		return err
	}

	switch cfg.Action {
	case actionShell, actionRescue:
		return rescueShell(ctx, l, shellPath)
	case actionReboot:
		l.printf("rebooting")
		unix.Sync()
		if err := unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART); err != nil {
			return fmt.Errorf("reboot: %w", err)
		}
	case actionInstall:
		if hooks.Install == nil {
			l.printf("goldcast.action=install: this goldcast has no installer; powering off")
			break
		}
		err := hooks.Install(ctx, Boot{Server: cfg.Server, Node: cfg.Node, Token: cfg.Token, BootID: rep.BootID, Interface: iface.Name, Console: l.w}, l.printf)
		if err != nil {
			// As SystemImager did: a failed install leaves the machine in
			// a shell for the admin; the server has the error and log.
			l.printf("install failed: %v", err)
		} else {
			l.printf("install finished; the post action asked for a shell")
		}
		return rescueShell(ctx, l, shellPath)
	default:
		l.printf("powering off")
		unix.Sync()
		if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
			return fmt.Errorf("power off: %w", err)
		}
	}
	return nil
}

// Hooks are what InitMain runs for the boot actions it does not carry
// out itself. The netboot package knows nothing of installing; the
// command that builds the initramfs (goldcast) supplies the installer.
type Hooks struct {
	// Install runs the install for goldcast.action=install once the
	// network is up and the machine has reported. It returns only when
	// the machine should get a shell (a failure, or post action shell);
	// reboot, poweroff and kexec do not return.
	Install func(ctx context.Context, b Boot, logf func(format string, args ...any)) error
}

// Boot is what the kernel command line told the initramfs.
type Boot struct {
	// Server is goldcast.server, Node goldcast.node, Token goldcast.token.
	Server, Node, Token string
	// BootID is this boot's kernel boot ID.
	BootID string
	// Interface is the network interface the machine booted from.
	Interface string
	// Console receives the installer's log, beside the server's events.
	Console io.Writer
}

// shellPath is the rescue shell the initramfs builder installs (busybox).
const shellPath = "/bin/sh"

// initPath is the command search path /init gives itself and the programs
// it runs: the install tools before busybox's applets of the same name.
const initPath = "/usr/sbin:/usr/bin:/sbin:/bin"

// rescueShell runs the shell at sh on the console, as the leader of a new
// session with the console as its terminal, and starts it again whenever
// it exits, until ctx ends. Without a shell it says so and waits.
func rescueShell(ctx context.Context, l *consoleLog, sh string) error {
	if _, err := os.Stat(sh); err != nil {
		l.printf("no rescue shell in this initramfs (%v): build it with busybox (apt-get install busybox-static); waiting", err)
		<-ctx.Done()
		return fmt.Errorf("wait for a rescue shell: %w", ctx.Err())
	}
	for {
		con, err := os.OpenFile("/dev/console", os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("open the console for the rescue shell: %w", err)
		}
		l.printf("rescue shell on the console (the installer is goldcast: goldcast install --help); exit to get a new one")
		cmd := exec.CommandContext(ctx, sh, "-l")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = con, con, con
		cmd.Env = []string{"PATH=" + initPath, "HOME=/", "TERM=linux", "PS1=goldcast rescue# "}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
		err = cmd.Run()
		con.Close()
		if ctx.Err() != nil {
			return fmt.Errorf("rescue shell: %w", ctx.Err())
		}
		l.printf("rescue shell ended (%v); starting a new one", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("rescue shell: %w", ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// orDefault returns s, or d when s is empty.
func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// mountFilesystems mounts /proc, /sys and /dev; one already mounted
// there is kept.
func mountFilesystems(l *consoleLog) error {
	for _, m := range []struct {
		fstype, target, data string
		flags                uintptr
	}{
		{"proc", "/proc", "", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		{"sysfs", "/sys", "", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		{"devtmpfs", "/dev", "mode=0755", unix.MS_NOSUID},
	} {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			return fmt.Errorf("mount %s: %w", m.target, err)
		}
		err := unix.Mount(m.fstype, m.target, m.fstype, m.flags, m.data)
		switch {
		case errors.Is(err, unix.EBUSY):
			l.printf("%s is already mounted", m.target)
		case err != nil:
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err)
		default:
			l.printf("mounted %s on %s", m.fstype, m.target)
		}
	}
	return nil
}

// loadModules loads the modules listFile names. A module that fails is
// logged and skipped: a driver for absent hardware must not stop the
// boot, and a missing network driver shows when no interface appears.
func loadModules(ctx context.Context, l *consoleLog, listFile string) error {
	data, err := os.ReadFile(listFile)
	if err != nil {
		return fmt.Errorf("read module list: %w", err)
	}
	files := readModuleList(data)
	failed, absent := 0, 0
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("load modules: %w", err)
		}
		decompressed, err := loadModule(f)
		switch {
		case errors.Is(err, unix.ENODEV):
			// A driver for hardware (or a CPU feature) this machine
			// lacks, such as crc32c_intel without SSE4.2: not an error.
			absent++
			l.printf("module %s: not for this machine (%v)", moduleName(f), err)
		case err != nil:
			failed++
			l.printf("module %s: %v", moduleName(f), err)
		case decompressed:
			l.printf("loaded module %s (decompressed by goldcast)", moduleName(f))
		default:
			l.printf("loaded module %s", moduleName(f))
		}
	}
	l.printf("modules: %d not for this machine, %d loaded, %d failed", absent, len(files)-failed-absent, failed)
	return nil
}

// waitForRandom waits until the kernel's random number generator is
// initialised, which DHCP (its transaction IDs) and TLS need. A blocking
// getrandom(2) makes the kernel gather entropy from CPU timing jitter
// (Linux 5.4 on) where nothing else seeds it: virtual machines without
// RDRAND or a virtio-rng device. It is instant where the CPU seeds it.
func waitForRandom(ctx context.Context, l *consoleLog) error {
	start := time.Now()
	ready := make(chan error, 1)
	go func() {
		var b [1]byte
		_, err := unix.Getrandom(b[:], 0)
		ready <- err
	}()
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		select {
		case err := <-ready:
			if err != nil {
				return fmt.Errorf("wait for the random number generator: getrandom: %w", err)
			}
			l.printf("random number generator ready (waited %v)", time.Since(start).Round(time.Millisecond))
			return nil
		case <-tick.C:
			l.printf("still waiting for the kernel's random number generator (%v)", time.Since(start).Round(time.Second))
		case <-ctx.Done():
			return fmt.Errorf("wait for the random number generator: %w", ctx.Err())
		}
	}
}

// waitForInterface polls sysDir until an Ethernet interface appears and
// returns the first one (see ethernetInterfaces).
func waitForInterface(ctx context.Context, l *consoleLog, sysDir string, wait time.Duration) (netInterface, error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		ifaces, err := ethernetInterfaces(sysDir)
		if err != nil {
			return netInterface{}, err
		}
		if len(ifaces) > 0 {
			l.printf("network interface %s (%s)", ifaces[0].Name, ifaces[0].MAC)
			return ifaces[0], nil
		}
		select {
		case <-ctx.Done():
			return netInterface{}, fmt.Errorf("no Ethernet interface appeared within %v (no driver for the NIC?): %w", wait, ctx.Err())
		case <-tick.C:
		}
	}
}

// configureNetwork brings lo and iface up, waits for a carrier, asks
// DHCP for an address and configures it, the default route and
// /etc/resolv.conf. It returns the address with its prefix.
func configureNetwork(ctx context.Context, l *consoleLog, iface netInterface, hostname string) (netip.Prefix, error) {
	nl, err := openRTNL()
	if err != nil {
		return netip.Prefix{}, err
	}
	defer nl.close()
	if lo, err := net.InterfaceByName("lo"); err == nil {
		if err := nl.linkUp(lo.Index); err != nil {
			return netip.Prefix{}, err
		}
	}
	if err := nl.linkUp(iface.Index); err != nil {
		return netip.Prefix{}, err
	}
	if waitForCarrier(ctx, filepath.Join("/sys/class/net", iface.Name, "carrier"), carrierWait) {
		l.printf("%s is up with a carrier", iface.Name)
	} else {
		l.printf("%s is up but has no carrier after %v; trying DHCP anyway", iface.Name, carrierWait)
	}

	dctx, cancel := context.WithTimeout(ctx, dhcpWait)
	defer cancel()
	client, err := nclient4.New(iface.Name, nclient4.WithTimeout(2*time.Second), nclient4.WithRetry(5))
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("DHCP client on %s: %w", iface.Name, err)
	}
	keep := false
	defer func() {
		if !keep {
			client.Close()
		}
	}()
	l.printf("DHCP on %s", iface.Name)
	lease, err := client.Request(dctx, dhcpv4.WithOption(dhcpv4.OptHostName(hostname)))
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("DHCP on %s: %w", iface.Name, err)
	}
	n, err := leaseNetwork(lease.ACK)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("DHCP on %s: %w", iface.Name, err)
	}
	l.printf("DHCP: %s from server %s, router %v, DNS %v", n.addr, lease.ACK.ServerIPAddr, n.router, n.dns)

	if err := nl.addAddr(iface.Index, n.addr); err != nil {
		return netip.Prefix{}, err
	}
	if n.router.IsValid() {
		if err := nl.addDefaultRoute(iface.Index, n.router); err != nil {
			return netip.Prefix{}, err
		}
	}
	if len(n.dns) > 0 {
		var b strings.Builder
		for _, d := range n.dns {
			fmt.Fprintf(&b, "nameserver %s\n", d)
		}
		if err := os.WriteFile("/etc/resolv.conf", []byte(b.String()), 0o644); err != nil {
			return netip.Prefix{}, fmt.Errorf("write resolver configuration: %w", err)
		}
	}
	l.printf("configured %s on %s", n.addr, iface.Name)
	// A long install outlives a short lease: renew it in the background
	// for as long as this initramfs runs.
	keep = true
	go renewLease(ctx, l, client, lease, hostname)
	return n.addr, nil
}

// renewAfter is when a lease acknowledged by ack should be renewed: its
// renewal time (option 58) when given, else half its lease time (default
// one hour), and at least a minute.
func renewAfter(ack *dhcpv4.DHCPv4) time.Duration {
	d := ack.IPAddressRenewalTime(0)
	if d <= 0 {
		d = ack.IPAddressLeaseTime(time.Hour) / 2
	}
	return max(d, time.Minute)
}

// renewLease renews lease at its renewal time, again and again, until ctx
// ends; a failed renewal is retried every minute. The address stays
// configured either way (the server keeps acknowledged leases).
func renewLease(ctx context.Context, l *consoleLog, client *nclient4.Client, lease *nclient4.Lease, hostname string) {
	defer client.Close()
	wait := renewAfter(lease.ACK)
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		renewed, err := client.Renew(rctx, lease, dhcpv4.WithOption(dhcpv4.OptHostName(hostname)))
		cancel()
		if err != nil {
			l.printf("DHCP renewal of %s failed (%v); retrying in a minute", lease.ACK.YourIPAddr, err)
			wait = time.Minute
			continue
		}
		lease = renewed
		wait = renewAfter(lease.ACK)
		l.printf("DHCP: renewed %s for %v", lease.ACK.YourIPAddr, lease.ACK.IPAddressLeaseTime(time.Hour))
	}
}

// waitForCarrier polls a sysfs carrier file until it reads 1 or wait
// passes, and reports whether it did.
func waitForCarrier(ctx context.Context, carrierFile string, wait time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		if c, err := readTrimmed(carrierFile); err == nil && c == "1" {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// leaseConfig is what the initramfs takes from a DHCPACK.
type leaseConfig struct {
	addr   netip.Prefix
	router netip.Addr // invalid when the lease names none
	dns    []netip.Addr
}

// leaseNetwork reads the address, prefix, first router and DNS servers
// of a DHCPACK. Without a subnet mask option the address's classful mask
// applies.
func leaseNetwork(ack *dhcpv4.DHCPv4) (leaseConfig, error) {
	var c leaseConfig
	ip, ok := netip.AddrFromSlice(ack.YourIPAddr.To4())
	if !ok || ip.IsUnspecified() {
		return c, fmt.Errorf("DHCPACK without an address (yiaddr %v)", ack.YourIPAddr)
	}
	mask := ack.SubnetMask()
	if mask == nil {
		mask = ack.YourIPAddr.DefaultMask()
	}
	ones, bits := mask.Size()
	if bits != 32 {
		return c, fmt.Errorf("DHCPACK subnet mask %v is not a contiguous IPv4 mask", mask)
	}
	c.addr = netip.PrefixFrom(ip, ones)
	if routers := ack.Router(); len(routers) > 0 {
		c.router, _ = netip.AddrFromSlice(routers[0].To4())
	}
	for _, d := range ack.DNS() {
		if a, ok := netip.AddrFromSlice(d.To4()); ok {
			c.dns = append(c.dns, a)
		}
	}
	return c, nil
}

// httpClient returns the client the report goes out with: no proxy
// (there is no environment to take one from), a timeout per try.
func httpClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	return &http.Client{Transport: tr, Timeout: reportTimeout}
}

// reporter posts a Report to the server.
type reporter struct {
	client  *http.Client
	log     *consoleLog
	tries   int
	backoff time.Duration
}

// refusedError is a 4xx answer to a report: sending it again would not
// help.
type refusedError struct {
	status string // "403 Forbidden"
	body   string // the start of the answer's body
}

func (e *refusedError) Error() string {
	return fmt.Sprintf("server refused the report: %s: %s", e.status, e.body)
}

// post sends rep to server's ReportPath with token, trying again after
// network errors and 5xx answers.
func (r reporter) post(ctx context.Context, server, token string, rep Report) error {
	body, err := json.Marshal(rep)
	if err != nil {
		return fmt.Errorf("encode boot report: %w", err)
	}
	target := strings.TrimSuffix(server, "/") + ReportPath
	wait := r.backoff
	for try := 1; ; try++ {
		err = r.postOnce(ctx, target, token, body)
		if err == nil {
			r.log.printf("reported to %s", target)
			return nil
		}
		var refused *refusedError
		if errors.As(err, &refused) || try >= r.tries {
			return fmt.Errorf("boot report to %s (try %d of %d): %w", target, try, r.tries, err)
		}
		r.log.printf("boot report to %s failed (try %d of %d), again in %v: %v", target, try, r.tries, wait, err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("boot report to %s: %w", target, ctx.Err())
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// postOnce makes one POST of body.
func (r reporter) postOnce(ctx context.Context, target, token string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("make request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set(api.NodeTokenHeader, token)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		return &refusedError{status: resp.Status, body: string(bytes.TrimSpace(msg))}
	default:
		return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(msg))
	}
}
