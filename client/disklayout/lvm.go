package disklayout

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// lvmArgs are the arguments Capture runs pvs, vgs and lvs with: a JSON
// report of the given fields, sizes in bytes without a unit suffix.
func lvmArgs(fields string) []string {
	return []string{"--reportformat", "json", "--units", "b", "--nosuffix", "-o", fields}
}

// The fields Capture asks pvs, vgs and lvs for.
const (
	pvsFields = "pv_name,vg_name,pv_uuid,pv_size"
	vgsFields = "vg_name,vg_uuid,vg_size,vg_extent_size"
	lvsFields = "lv_name,vg_name,lv_uuid,lv_size,lv_attr,segtype,lv_path"
)

// lvmReport parses an LVM JSON report,
//
//	{"report": [{"pv": [{"pv_name":"/dev/md0", "vg_name":"vg0", ...}]}]}
//
// and returns the rows of section (pv, vg or lv). Every value is a string.
func lvmReport(data []byte, section string) ([]map[string]string, error) {
	var doc struct {
		Report []map[string][]map[string]string `json:"report"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%ss json: %w", section, err)
	}
	var rows []map[string]string
	for _, r := range doc.Report {
		rows = append(rows, r[section]...)
	}
	return rows, nil
}

// lvmSize parses an LVM size printed with --units b --nosuffix (tolerating
// a "B" suffix or a fraction).
func lvmSize(s string) (int64, error) {
	s = strings.TrimSuffix(strings.TrimSpace(s), "B")
	if s == "" {
		return 0, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	return int64(f + 0.5), nil
}

// parseLVM combines the JSON reports of vgs, lvs and pvs (run with
// lvmArgs and vgsFields, lvsFields, pvsFields) into an LVM with every
// volume group, or nil when there is none. Physical volumes in no group
// are left out.
func parseLVM(vgsOut, lvsOut, pvsOut []byte) (*LVM, error) {
	vgRows, err := lvmReport(vgsOut, "vg")
	if err != nil {
		return nil, err
	}
	lvRows, err := lvmReport(lvsOut, "lv")
	if err != nil {
		return nil, err
	}
	pvRows, err := lvmReport(pvsOut, "pv")
	if err != nil {
		return nil, err
	}
	if len(vgRows) == 0 {
		return nil, nil
	}
	l := &LVM{}
	index := map[string]int{}
	for _, r := range vgRows {
		size, err := lvmSize(r["vg_size"])
		if err != nil {
			return nil, fmt.Errorf("vgs: %s: %w", r["vg_name"], err)
		}
		ext, err := lvmSize(r["vg_extent_size"])
		if err != nil {
			return nil, fmt.Errorf("vgs: %s: %w", r["vg_name"], err)
		}
		l.VolumeGroups = append(l.VolumeGroups, VolumeGroup{
			Name: r["vg_name"], UUID: r["vg_uuid"], SizeBytes: size, ExtentSizeBytes: ext,
		})
	}
	sort.SliceStable(l.VolumeGroups, func(i, j int) bool { return l.VolumeGroups[i].Name < l.VolumeGroups[j].Name })
	for i, vg := range l.VolumeGroups {
		index[vg.Name] = i
	}
	for _, r := range pvRows {
		i, ok := index[r["vg_name"]]
		if !ok {
			continue
		}
		size, err := lvmSize(r["pv_size"])
		if err != nil {
			return nil, fmt.Errorf("pvs: %s: %w", r["pv_name"], err)
		}
		l.VolumeGroups[i].PVs = append(l.VolumeGroups[i].PVs, PhysicalVolume{
			Device: r["pv_name"], UUID: r["pv_uuid"], SizeBytes: size,
		})
	}
	for _, r := range lvRows {
		if _, ok := index[r["vg_name"]]; !ok {
			continue
		}
		size, err := lvmSize(r["lv_size"])
		if err != nil {
			return nil, fmt.Errorf("lvs: %s/%s: %w", r["vg_name"], r["lv_name"], err)
		}
		l.LogicalVolumes = append(l.LogicalVolumes, LogicalVolume{
			Name: r["lv_name"], VG: r["vg_name"], UUID: r["lv_uuid"], SizeBytes: size,
			SegType: r["segtype"], Attr: r["lv_attr"], Path: r["lv_path"],
		})
	}
	return l, nil
}
