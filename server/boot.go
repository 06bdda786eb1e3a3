package server

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/goldcast/goldcast/api"
	"github.com/goldcast/goldcast/config"
	"github.com/goldcast/goldcast/netboot/ipxe"
	"github.com/goldcast/goldcast/server/state"
)

// Boot files (kernel and goldcast initramfs) live in DATA/boot under these
// names; `goldcast netboot initramfs` writes the initramfs there.
const (
	BootKernel = "vmlinuz"
	BootInitrd = "goldcast-initrd.img"
)

// bootHandler serves network boot over HTTP: the per-node iPXE script,
// the kernel and initramfs (with Range support), and the report a booted
// initramfs sends.
type bootHandler struct {
	dataDir string
	cluster *cluster
	state   *state.Store
	log     *slog.Logger
	// unknownNodes is "register" to boot unknown machines into the
	// initramfs and record them, "menu" to show them a menu; empty
	// follows server.unknown_nodes of the running goldcast.yaml.
	unknownNodes string
}

// DiscoveredPrefix starts the names of nodes the server records for
// machines it did not know (unknown_nodes: register).
const DiscoveredPrefix = "discovered-"

// DiscoveredName is the node name a registered unknown machine gets:
// DiscoveredPrefix and its MAC in lowercase hex without separators.
func DiscoveredName(mac net.HardwareAddr) string {
	return DiscoveredPrefix + strings.ReplaceAll(mac.String(), ":", "")
}

func (h *bootHandler) bootDir() string { return filepath.Join(h.dataDir, "boot") }

// findByMAC returns the node whose record holds mac.
func findByMAC(c *config.Config, mac net.HardwareAddr) (config.Node, bool) {
	for _, n := range c.ExpandedNodes() {
		for _, m := range n.MACs {
			if hw, err := net.ParseMAC(m); err == nil && hw.String() == mac.String() {
				return n, true
			}
		}
	}
	return config.Node{}, false
}

// findByUUID returns the node whose record holds the SMBIOS UUID u.
func findByUUID(c *config.Config, u string) (config.Node, bool) {
	u = strings.ToLower(strings.TrimSpace(u))
	if u == "" {
		return config.Node{}, false
	}
	for _, n := range c.ExpandedNodes() {
		if n.UUID != "" && n.UUID == u {
			return n, true
		}
	}
	return config.Node{}, false
}

// script answers GET /boot/ipxe?mac=MAC[&uuid=UUID] with the node's iPXE
// script: the node holding the MAC, else the one holding the machine's
// SMBIOS UUID.
func (h *bootHandler) script(w http.ResponseWriter, r *http.Request) {
	mac, err := net.ParseMAC(r.URL.Query().Get("mac"))
	if err != nil {
		http.Error(w, fmt.Sprintf("#!ipxe\necho goldcast: mac=%q is not a MAC address\n", r.URL.Query().Get("mac")), http.StatusBadRequest)
		return
	}
	base := "http://" + r.Host
	s := ipxe.Script{MAC: mac.String(), ServerURL: base}
	node, known := findByMAC(h.cluster.Get(), mac)
	if !known {
		node, known = findByUUID(h.cluster.Get(), r.URL.Query().Get("uuid"))
	}
	unknown := h.unknownNodes
	if unknown == "" {
		unknown = h.cluster.Get().Server.UnknownNodes
	}
	if !known && unknown == "register" {
		node, known = config.Node{Name: DiscoveredName(mac), Boot: config.Boot(ipxe.Register)}, true
	}
	if known && node.Boot == config.BootInstall && LocalBootRecorded(h.state, node.Name) {
		// Installed, but declared by a range entry the server could not
		// flip alone: the state remembers the local boot.
		node.Boot = config.BootLocal
	}
	if known {
		s.Node, s.Action, s.KernelArgs = node.Name, ipxe.Action(node.Boot), node.KernelArgs
		s.KernelURL, s.InitrdURL = base+"/boot/files/"+BootKernel, base+"/boot/files/"+BootInitrd
		if s.Action == ipxe.Install || s.Action == ipxe.Rescue || s.Action == ipxe.Register {
			if s.Token, err = IssueNodeToken(h.dataDir, node.Name); err != nil {
				http.Error(w, "#!ipxe\necho goldcast: "+err.Error()+"\n", http.StatusInternalServerError)
				return
			}
		}
	}
	body, err := ipxe.Render(s)
	if err != nil {
		http.Error(w, "#!ipxe\necho goldcast: "+strings.ReplaceAll(err.Error(), "\n", " ")+"\n", http.StatusInternalServerError)
		return
	}
	h.event(s.Node, "ipxe", fmt.Sprintf("iPXE script (%s) sent to %s for %s", orDefault(string(s.Action), "menu"), r.RemoteAddr, mac), map[string]string{"mac": mac.String()})
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write(body)
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// file serves a boot file from DATA/boot (Range requests included).
func (h *bootHandler) file(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	dir := h.bootDir()
	switch {
	case name == BootKernel || name == BootInitrd:
	case slices.Contains(IPXEBinaries(), name):
		// UEFI HTTP boot fetches iPXE itself over HTTP.
		dir = filepath.Join(dir, "ipxe")
	default:
		writeError(w, http.StatusNotFound, fmt.Sprintf("no boot file %q (served: %s, %s and the iPXE binaries)", name, BootKernel, BootInitrd))
		return
	}
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("boot file %s is missing: put the kernel at DATA/boot/%s and run goldcast netboot initramfs", name, BootKernel))
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	http.ServeContent(w, r, name, fi.ModTime(), f)
}

// report records a booted node.
func (h *bootHandler) report(w http.ResponseWriter, r *http.Request) {
	var rep api.BootReport
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&rep); err != nil {
		writeError(w, http.StatusBadRequest, "decode boot report: "+err.Error())
		return
	}
	if !nodeTokenValid(h.dataDir, rep.Node, r.Header.Get(api.NodeTokenHeader)) {
		writeError(w, http.StatusForbidden, fmt.Sprintf("boot report for node %q without that node's token", rep.Node))
		return
	}
	fields := map[string]string{
		"macs": strings.Join(rep.MACs, ","), "cpus": fmt.Sprint(rep.CPUs), "memory_kb": fmt.Sprint(rep.MemoryKB),
		"disks": strings.Join(rep.Disks, ","), "kernel": rep.Kernel, "machine": rep.Machine, "address": rep.Address,
	}
	h.event(rep.Node, "booted", fmt.Sprintf("booted: %d CPUs, %d MB, disks %s, kernel %s", rep.CPUs, rep.MemoryKB/1024, strings.Join(rep.Disks, " "), rep.Kernel), fields)
	if err := h.state.PutNodeStatus(state.NodeStatus{Node: rep.Node, State: "booted", Updated: time.Now().UTC(), Kernel: rep.Kernel, BootID: rep.BootID}); err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if strings.HasPrefix(rep.Node, DiscoveredPrefix) {
		if err := h.register(rep); err != nil {
			h.log.Error("register discovered machine", "node", rep.Node, "err", err)
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// register records a machine that booted with the register action as a
// node of goldcast.yaml (boot action local, so it does not boot into the
// initramfs again), its hardware in the node's variables, unless a node
// of that name or with its MAC exists already.
func (h *bootHandler) register(rep api.BootReport) error {
	var mac net.HardwareAddr
	for _, m := range rep.MACs {
		if hw, err := net.ParseMAC(m); err == nil && DiscoveredName(hw) == rep.Node {
			mac = hw
		}
	}
	if mac == nil {
		return fmt.Errorf("report of %s names none of its MACs (%s)", rep.Node, strings.Join(rep.MACs, " "))
	}
	var added bool
	err := h.cluster.Edit(func(ed *config.Editor) (bool, error) {
		c := h.cluster.Get()
		if _, ok := findByMAC(c, mac); ok {
			return false, nil
		}
		for _, n := range c.ExpandedNodes() {
			if n.Name == rep.Node {
				return false, nil
			}
		}
		vars := map[string]string{
			"cpus": fmt.Sprint(rep.CPUs), "memory_mb": fmt.Sprint(rep.MemoryKB / 1024),
			"disks": strings.Join(rep.Disks, " "), "machine": rep.Machine, "discovered": time.Now().UTC().Format(time.RFC3339),
		}
		added = true
		return true, ed.AddNode(config.Node{Name: rep.Node, MACs: []string{mac.String()}, Boot: config.BootLocal, Vars: vars})
	})
	if err != nil {
		return err
	}
	if added {
		h.event(rep.Node, "registered", fmt.Sprintf("unknown machine %s registered as node %s (boot local): adopt it with goldcast node set %s --image IMG --boot install, or rename it", mac, rep.Node, rep.Node), map[string]string{"mac": mac.String()})
	}
	return nil
}

func (h *bootHandler) event(node, stage, msg string, fields map[string]string) {
	if _, err := h.state.AppendEvent(state.Event{Node: node, Kind: "boot", Stage: stage, Message: msg, Fields: fields}); err != nil {
		h.log.Warn("record boot event", "node", node, "err", err)
	}
}

// forgetLocalBoots clears the local boot the state records for installed
// nodes of range entries (see installService.bootLocal) whose boot action
// goldcast.yaml changed: setting the entry to local and back to install
// reinstalls them.
func forgetLocalBoots(db *state.Store, old, cur *config.Config, log *slog.Logger) {
	if old == nil {
		return
	}
	was := map[string]config.Boot{}
	for _, n := range old.ExpandedNodes() {
		was[n.Name] = n.Boot
	}
	for _, n := range cur.ExpandedNodes() {
		if b, ok := was[n.Name]; !ok || b == n.Boot {
			continue
		}
		if _, err := db.UpdateNodeStatus(n.Name, func(st *state.NodeStatus, found bool) bool {
			if !found || !st.LocalBoot {
				return false
			}
			st.LocalBoot = false
			return true
		}); err != nil {
			log.Warn("clear the recorded local boot", "node", n.Name, "err", err)
		}
	}
}
