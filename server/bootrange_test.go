package server

import (
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/goldcast/goldcast/api"
)

// TestRangeNodeBootsLocalAfterInstall: a node of a range entry, which the
// server cannot flip alone in goldcast.yaml, gets the local-boot script
// after its install anyway (the state remembers it), while the entry's
// other nodes still install; changing the entry's boot action to local
// and back to install reinstalls it.
func TestRangeNodeBootsLocalAfterInstall(t *testing.T) {
	yaml := func(boot string) string {
		return "nodes:\n  - name: rack[01-02]\n    macs: [\"52:54:00:00:01:01\", \"52:54:00:00:01:02\"]\n    boot: " + boot + "\n"
	}
	s := startInstallServer(t, yaml("install"), 0)
	os.MkdirAll(s.data+"/boot", 0o755)
	os.WriteFile(s.data+"/boot/"+BootKernel, []byte("k"), 0o644)
	os.WriteFile(s.data+"/boot/"+BootInitrd, []byte("i"), 0o644)
	script := func(mac string) string {
		t.Helper()
		resp, err := http.Get(s.url + "/boot/ipxe?mac=" + mac)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	tok := s.nodeToken("rack02")
	s.progress("rack02", tok, api.Progress{Stage: api.StageStart, State: api.StateInstalling, Image: "web", Version: 1})
	s.progress("rack02", tok, api.Progress{Stage: api.StageDone, State: api.StateInstalled, Image: "web", Version: 1, Percent: 100})
	if sc := script("52:54:00:00:01:02"); !strings.Contains(sc, "sanboot") {
		t.Errorf("installed rack02 is not sent to its disk:\n%s", sc)
	}
	if sc := script("52:54:00:00:01:01"); !strings.Contains(sc, "goldcast.action=install") {
		t.Errorf("rack01 (not installed yet) does not install:\n%s", sc)
	}
	// The admin sets the entry to local, then to install again.
	waitScript := func(mac, want string) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !strings.Contains(script(mac), want) {
			if time.Now().After(deadline) {
				t.Fatalf("%s's script never contains %q:\n%s", mac, want, script(mac))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	for _, boot := range []string{"local", "install"} {
		if err := os.WriteFile(s.config, []byte(yaml(boot)+"# "+boot+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if boot == "local" {
			waitScript("52:54:00:00:01:01", "sanboot")
		}
	}
	waitScript("52:54:00:00:01:02", "goldcast.action=install")
}
