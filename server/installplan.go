package server

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/goldcast/goldcast/api"
	"github.com/goldcast/goldcast/config"
)

// ScriptsDir is where install scripts live under the data directory:
// DATA/scripts/pre-install/NNclass.description and
// DATA/scripts/post-install/NNclass.description, as in SystemImager.
const ScriptsDir = "scripts"

// LayoutsDir holds the admin's disk layouts under the data directory:
// DATA/layouts/NAME.yaml (or .json), named by a node's install.layout.
const LayoutsDir = "layouts"

// readLayoutOverride reads the layout file NAME(.yaml|.yml|.json) from dir
// and returns it as JSON for the install plan (the installer checks its
// contents when it plans the disk).
func readLayoutOverride(dir, name string) (json.RawMessage, error) {
	var data []byte
	var err error
	for _, f := range []string{name, name + ".yaml", name + ".yml", name + ".json"} {
		if data, err = os.ReadFile(filepath.Join(dir, f)); err == nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("disk layout %q: no %s/%s.yaml or .json", name, dir, name)
	}
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("disk layout %q: %w", name, err)
	}
	if _, ok := v.(map[string]any); !ok {
		return nil, fmt.Errorf("disk layout %q: want a mapping with disks:", name)
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("disk layout %q: %w", name, err)
	}
	return raw, nil
}

// installPlan answers GET /nodes/{node}/install with the node's
// api.InstallPlan.
func (h *nodeHandler) installPlan(w http.ResponseWriter, r *http.Request) {
	p, _, ok := h.plan(w, r)
	if !ok {
		return
	}
	v, err := h.store.Resolve(fmt.Sprintf("%s@%d", p.Image, p.Version))
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	var node config.Node
	for _, n := range h.cluster.Get().ExpandedNodes() {
		if n.Name == p.Node {
			node = n
		}
	}
	plan := api.InstallPlan{
		Node: p.Node, Hostname: p.Data.Hostname,
		Image: p.Image, Version: p.Version, ImageDigest: v.Info.ManifestDigest, PlanDigest: p.Digest,
		Transport: string(node.Transport), Disk: node.Install.Disk, Wipe: node.Install.Wipe,
		PostAction: node.Install.PostAction, Layout: v.Info.DiskLayout,
		KernelArgs: node.KernelArgs, Vars: p.Data.Vars, Groups: p.Data.Groups,
	}
	if name := node.Install.Layout; name != "" {
		raw, err := readLayoutOverride(filepath.Join(h.store.Root(), LayoutsDir), name)
		if err != nil {
			writeError(w, http.StatusUnprocessableEntity, fmt.Sprintf("node %s: %v", p.Node, err))
			return
		}
		plan.LayoutOverride = raw
	}
	if plan.Transport == "" {
		plan.Transport = string(config.TransportHTTP)
	}
	if plan.PostAction == "" {
		plan.PostAction = "reboot"
	}
	classes := scriptClasses(p.Image, p.Data.Hostname, p.Node, p.Data.Groups)
	for _, phase := range []string{api.PhasePreInstall, api.PhasePostInstall} {
		scripts, err := listScripts(filepath.Join(h.store.Root(), ScriptsDir, phase), phase, classes)
		if err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		plan.Scripts = append(plan.Scripts, scripts...)
	}
	writeJSON(w, http.StatusOK, plan)
}

// script answers GET /nodes/{node}/scripts/{phase}/{name} with a script
// that applies to the node.
func (h *nodeHandler) script(w http.ResponseWriter, r *http.Request) {
	p, _, ok := h.plan(w, r)
	if !ok {
		return
	}
	phase, name := r.PathValue("phase"), r.PathValue("name")
	if phase != api.PhasePreInstall && phase != api.PhasePostInstall {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no script phase %q (want %s or %s)", phase, api.PhasePreInstall, api.PhasePostInstall))
		return
	}
	classes := scriptClasses(p.Image, p.Data.Hostname, p.Node, p.Data.Groups)
	dir := filepath.Join(h.store.Root(), ScriptsDir, phase)
	scripts, err := listScripts(dir, phase, classes)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if !slices.ContainsFunc(scripts, func(s api.InstallScript) bool { return s.Name == name }) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no %s script %q for node %s", phase, name, p.Node))
		return
	}
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(data)
}

// scriptClasses returns the classes whose scripts apply to a node, in the
// order they run: all, the image, the host name without its trailing
// digits (node for node007), the node's groups (most important last, so
// it runs after the others), the host name, and the node name when it
// differs.
func scriptClasses(image, hostname, node string, groups []string) []string {
	short, _, _ := strings.Cut(hostname, ".")
	base := strings.TrimRight(short, "0123456789")
	classes := []string{"all", image}
	if base != "" && base != short {
		classes = append(classes, base)
	}
	for i := len(groups) - 1; i >= 0; i-- {
		classes = append(classes, groups[i])
	}
	classes = append(classes, short)
	if node != short {
		classes = append(classes, node)
	}
	var out []string
	for _, c := range classes {
		if c != "" && !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

// parseScriptName splits NNclass.description (the description optional)
// into its number and class.
func parseScriptName(name string) (int, string, bool) {
	i := 0
	for i < len(name) && name[i] >= '0' && name[i] <= '9' {
		i++
	}
	if i == 0 || i == len(name) {
		return 0, "", false
	}
	n, err := strconv.Atoi(name[:i])
	if err != nil {
		return 0, "", false
	}
	class, _, _ := strings.Cut(name[i:], ".")
	return n, class, class != ""
}

// listScripts returns the executable scripts in dir whose class is one of
// classes, ordered by class (in classes' order) and then by number.
// Files whose names do not follow NNclass.description, that are not
// executable, or that are hidden are skipped; a missing dir holds none.
func listScripts(dir, phase string, classes []string) ([]api.InstallScript, error) {
	ents, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("install scripts: %w", err)
	}
	type found struct {
		script api.InstallScript
		num    int
		rank   int
	}
	var all []found
	for _, e := range ents {
		name := e.Name()
		num, class, ok := parseScriptName(name)
		rank := slices.Index(classes, class)
		if !ok || rank < 0 || strings.HasPrefix(name, ".") || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil || fi.Mode()&0o111 == 0 {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("install script %s: %w", name, err)
		}
		sum := sha256.Sum256(data)
		all = append(all, found{api.InstallScript{Phase: phase, Name: name, Class: class, SHA256: hex.EncodeToString(sum[:])}, num, rank})
	}
	slices.SortFunc(all, func(a, b found) int {
		if a.rank != b.rank {
			return a.rank - b.rank
		}
		if a.num != b.num {
			return a.num - b.num
		}
		return strings.Compare(a.script.Name, b.script.Name)
	})
	out := make([]api.InstallScript, len(all))
	for i, f := range all {
		out[i] = f.script
	}
	return out, nil
}
