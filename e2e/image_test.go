package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/goldcast/goldcast/internal/testtree"
)

// imageInfo is the part of `image info --json` the tests read.
type imageInfo struct {
	Image          string `json:"image"`
	Version        int    `json:"version"`
	Path           string `json:"path"`
	ManifestDigest string `json:"manifest_digest"`
	Signed         bool   `json:"signed"`
}

func info(t *testing.T, data, ref string) imageInfo {
	t.Helper()
	r := ok(t, "--data", data, "image", "info", ref, "--json")
	var i imageInfo
	if err := json.Unmarshal([]byte(r.stdout), &i); err != nil {
		t.Fatalf("image info --json: %v\n%s", err, r.stdout)
	}
	return i
}

// roundTrip runs the acceptance chain on src: import -> export ->
// import-stream -> extract, checking each copy with the fidelity oracle.
func roundTrip(t *testing.T, src string, skip ...string) {
	data := filepath.Join(t.TempDir(), "data")
	work := t.TempDir()
	stream := filepath.Join(work, "img.tar.zst")
	ok(t, "--data", data, "image", "import", src, "--image", "golden")
	i := info(t, data, "golden")
	if i.Path == "" || i.Version != 1 {
		t.Fatalf("image info: %+v", i)
	}
	testtree.Oracle(t, src, i.Path, skip...)
	ok(t, "--data", data, "image", "export", "golden", "--format", "tar.zst", "-o", stream)
	ok(t, "--data", data, "image", "import-stream", stream, "--image", "copy")
	c := info(t, data, "copy")
	if c.ManifestDigest != i.ManifestDigest {
		t.Errorf("import-stream digest %s, import digest %s", c.ManifestDigest, i.ManifestDigest)
	}
	testtree.Oracle(t, src, c.Path, skip...)
	target := filepath.Join(work, "target")
	ok(t, "--data", data, "image", "extract", stream, "--target", target)
	testtree.Oracle(t, src, target, skip...)
	ok(t, "--data", data, "image", "verify", "golden")
	ok(t, "--data", data, "image", "verify", "copy")
}

func TestTortureTreeRoundTrip(t *testing.T) {
	tt := testtree.Build(t, filepath.Join(t.TempDir(), "src"))
	roundTrip(t, tt.Root, tt.Skipped()...)
}

func TestDebianRootRoundTrip(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short mode")
	}
	roundTrip(t, testtree.Debootstrap(t))
}

func TestStdinStdoutStreams(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "f"), []byte("data"), 0o640)
	data := filepath.Join(t.TempDir(), "data")
	ok(t, "--data", data, "image", "import", src, "--image", "a")
	target := filepath.Join(t.TempDir(), "t")
	sh := exec.Command("sh", "-c", `"$0" --data "$1" image export a -o - | "$0" --data "$1" image extract - --target "$2"`,
		goldcast.path, data, target)
	if out, err := sh.CombinedOutput(); err != nil {
		t.Fatalf("export | extract: %v\n%s", err, out)
	}
	testtree.Oracle(t, src, target)
}

func TestVerifyDetectsTampering(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "motd"), []byte("hello"), 0o644)
	data := filepath.Join(t.TempDir(), "data")
	ok(t, "--data", data, "image", "import", src, "--image", "a")
	tree := info(t, data, "a").Path
	os.Chmod(filepath.Join(tree, "motd"), 0o666)
	r := run(t, "--data", data, "image", "verify", "a")
	if r.code != 1 || !strings.Contains(r.stdout, `motd: mode "0644" -> "0666"`) {
		t.Fatalf("verify of a tampered tree: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = run(t, "--data", data, "image", "verify", "a", "--json")
	var out struct {
		OK          bool `json:"ok"`
		Differences []struct {
			Path string `json:"path"`
		} `json:"differences"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || out.OK || len(out.Differences) != 1 || out.Differences[0].Path != "motd" {
		t.Fatalf("verify --json: %v %+v\n%s", err, out, r.stdout)
	}
}

func TestSigningCommands(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644)
	data := filepath.Join(t.TempDir(), "data")
	keys := t.TempDir()
	ok(t, "key", "generate", "--out", keys+"/good")
	ok(t, "key", "generate", "--out", keys+"/other")
	if r := run(t, "key", "generate", "--out", keys+"/good"); r.code == 0 {
		t.Fatal("key generate overwrote an existing key")
	}
	ok(t, "--data", data, "image", "import", src, "--image", "a")
	ok(t, "--data", data, "image", "sign", "a", "--key", keys+"/good")
	ok(t, "--data", data, "image", "verify", "a", "--pubkey", keys+"/good.pub")
	r := run(t, "--data", data, "image", "verify", "a", "--pubkey", keys+"/other.pub")
	if r.code == 0 || !strings.Contains(r.stderr, "bad signature") {
		t.Fatalf("verify with the wrong key: exit %d %s", r.code, r.stderr)
	}
	stream := filepath.Join(t.TempDir(), "a.tar.zst")
	ok(t, "--data", data, "image", "export", "a", "-o", stream)
	ok(t, "image", "extract", stream, "--target", filepath.Join(t.TempDir(), "t"), "--pubkey", keys+"/good.pub")
	target := filepath.Join(t.TempDir(), "t")
	r = run(t, "image", "extract", stream, "--target", target, "--pubkey", keys+"/other.pub")
	if r.code == 0 || !strings.Contains(r.stderr, "not by the given key") {
		t.Fatalf("extract with the wrong key: exit %d %s", r.code, r.stderr)
	}
	if _, err := os.Stat(target); !os.IsNotExist(err) {
		t.Errorf("refused extraction left its target behind: %v", err)
	}
}

func TestShellPublishesAndAborts(t *testing.T) {
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "etc"), 0o755)
	os.WriteFile(filepath.Join(src, "etc/motd"), []byte("v1\n"), 0o644)
	data := filepath.Join(t.TempDir(), "data")
	ok(t, "--data", data, "image", "import", src, "--image", "a")
	ok(t, "--data", data, "image", "shell", "a", "--command", "echo v2 > etc/motd")
	if b, _ := os.ReadFile(filepath.Join(info(t, data, "a@2").Path, "etc/motd")); string(b) != "v2\n" {
		t.Fatalf("a@2 etc/motd = %q", b)
	}
	r := run(t, "--data", data, "image", "shell", "a", "--command", "echo v3 > etc/motd; exit 3")
	if r.code != 3 || !strings.Contains(r.stderr, "aborted") {
		t.Fatalf("aborted shell: exit %d %s", r.code, r.stderr)
	}
	if r := run(t, "--data", data, "image", "info", "a@3"); r.code == 0 {
		t.Fatal("an aborted shell published a version")
	}
	d := ok(t, "--data", data, "image", "diff", "a@1", "a@2")
	if !strings.Contains(d.stdout, ">fc") || !strings.Contains(d.stdout, " etc/motd") {
		t.Fatalf("image diff:\n%s", d.stdout)
	}
}

func TestShellChrootsIntoDebianRoot(t *testing.T) {
	if testing.Short() || os.Geteuid() != 0 {
		t.Skip("needs root and the debootstrap root")
	}
	data := filepath.Join(t.TempDir(), "data")
	ok(t, "--data", data, "image", "import", testtree.Debootstrap(t), "--image", "deb")
	// Inside the chroot /etc/debian_version is the image's, and the
	// change lands in the new version only.
	ok(t, "--data", data, "image", "shell", "deb", "--command", "test -f /etc/debian_version && echo tuned > /etc/motd")
	if b, _ := os.ReadFile(filepath.Join(info(t, data, "deb@2").Path, "etc/motd")); string(b) != "tuned\n" {
		t.Fatalf("deb@2 etc/motd = %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(info(t, data, "deb@1").Path, "etc/motd")); string(b) == "tuned\n" {
		t.Fatal("the shell edited version 1")
	}
	ok(t, "--data", data, "image", "verify", "deb@1")
	ok(t, "--data", data, "image", "verify", "deb@2")
}

func TestRemoveRefusesWhileNodesUseImage(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644)
	data := filepath.Join(t.TempDir(), "data")
	ok(t, "--data", data, "image", "import", src, "--image", "web")
	cfg := "nodes:\n  - name: node[01-03]\n    image: web\n"
	os.WriteFile(filepath.Join(data, "goldcast.yaml"), []byte(cfg), 0o644)
	r := run(t, "--data", data, "image", "rm", "web")
	if r.code == 0 || !strings.Contains(r.stderr, "node01, node02, node03") {
		t.Fatalf("rm of a used image: exit %d %s", r.code, r.stderr)
	}
	ok(t, "--data", data, "image", "rm", "web", "--force")
	if r := run(t, "--data", data, "image", "info", "web"); r.code == 0 {
		t.Fatal("image still exists after rm --force")
	}
	// A broken configuration stops the command with file, line and field.
	os.WriteFile(filepath.Join(data, "goldcast.yaml"), []byte("nodes:\n  - name: n1\n    boot: instal\n"), 0o644)
	r = run(t, "--data", data, "image", "rm", "web")
	if r.code == 0 || !strings.Contains(r.stderr, "goldcast.yaml:3: nodes[0].boot") {
		t.Fatalf("rm with a broken config: exit %d %s", r.code, r.stderr)
	}
}

func TestKilledImportIsCleanedUp(t *testing.T) {
	src := t.TempDir()
	// Enough data that the import is still running when it is killed.
	big := make([]byte, 1<<20)
	for i := 0; i < 300; i++ {
		os.WriteFile(filepath.Join(src, "f"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+time.Duration(i).String()), big, 0o644)
	}
	data := filepath.Join(t.TempDir(), "data")
	cmd := exec.Command(goldcast.path, "--data", data, "image", "import", src, "--image", "big")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		ents, _ := os.ReadDir(filepath.Join(data, ".staging"))
		if len(ents) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	r := ok(t, "--data", data, "image", "ls", "--json")
	if strings.TrimSpace(r.stdout) != "[]" {
		t.Fatalf("image ls after a killed import: %s", r.stdout)
	}
	if !strings.Contains(r.stderr, "interrupted") {
		t.Errorf("the next command did not say it cleaned up; stderr:\n%s", r.stderr)
	}
	ok(t, "--data", data, "image", "import", src, "--image", "big")
	ok(t, "--data", data, "image", "verify", "big")
}

func TestListingsAndHelp(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644)
	data := filepath.Join(t.TempDir(), "data")
	ok(t, "--data", data, "image", "import", src, "--image", "a")
	ok(t, "--data", data, "image", "cp", "a", "b")
	ok(t, "--data", data, "image", "mv", "b", "c")
	var list []struct {
		Name     string `json:"name"`
		Versions int    `json:"versions"`
	}
	if err := json.Unmarshal([]byte(ok(t, "--data", data, "image", "ls", "--json").stdout), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "a" || list[1].Name != "c" {
		t.Fatalf("image ls --json: %+v", list)
	}
	if r := ok(t, "--data", data, "image", "versions", "a"); !strings.Contains(r.stdout, "VERSION") {
		t.Fatalf("image versions: %s", r.stdout)
	}
	if r := run(t, "--data", data, "image", "info", "nope"); r.code == 0 || !strings.Contains(r.stderr, `image "nope": not found`) {
		t.Fatalf("info of a missing image: %d %s", r.code, r.stderr)
	}
	if r := run(t, "--data", data, "image", "import", src); r.code == 0 || !strings.Contains(r.stderr, "--image NAME is required") {
		t.Fatalf("import without --image: %d %s", r.code, r.stderr)
	}
	if r := ok(t, "completion", "bash"); !strings.Contains(r.stdout, "goldcast") {
		t.Fatal("no bash completion")
	}
	man := t.TempDir()
	ok(t, "gen-man", man)
	if _, err := os.Stat(filepath.Join(man, "goldcast-image-import.1")); err != nil {
		t.Fatalf("man page missing: %v", err)
	}
}

func TestRemoveVersionsAndPins(t *testing.T) {
	src := t.TempDir()
	data := filepath.Join(t.TempDir(), "data")
	for _, v := range []string{"1", "2", "3"} {
		os.WriteFile(filepath.Join(src, "v"), []byte(v), 0o644)
		ok(t, "--data", data, "image", "import", src, "--image", "web")
	}
	os.WriteFile(filepath.Join(data, "goldcast.yaml"), []byte("nodes:\n  - name: n1\n    image: web@2\n"), 0o644)
	if r := run(t, "--data", data, "image", "rm", "web@2"); r.code == 0 || !strings.Contains(r.stderr, "pins it") {
		t.Fatalf("rm of a pinned version: exit %d %s", r.code, r.stderr)
	}
	ok(t, "--data", data, "image", "rm", "web@latest")
	if r := ok(t, "--data", data, "image", "info", "web"); !strings.Contains(r.stdout, "web@2") {
		t.Fatalf("after rm web@latest the latest should be web@2:\n%s", r.stdout)
	}
	ok(t, "--data", data, "image", "prune", "--keep", "1")
	if r := ok(t, "--data", data, "image", "versions", "web", "--json"); !strings.Contains(r.stdout, `"version": 2`) {
		t.Fatalf("prune removed the pinned version:\n%s", r.stdout)
	}
	if r := run(t, "--data", filepath.Join(t.TempDir(), "typo"), "image", "ls"); r.code == 0 || !strings.Contains(r.stderr, "no image store") {
		t.Fatalf("ls on a missing store: exit %d %s", r.code, r.stderr)
	}
}
