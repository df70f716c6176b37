package sandbox

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// containerd reads the config the sandbox writes, and keeps every path it names: an option it
// did not know would be dropped silently (config version 4 ignores old sections).
func TestContainerdTakesTheNodeConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the containerd binary")
	}
	bin := FindBinDir()
	p := nodePaths{dir: t.TempDir(), binDir: bin}
	cfg := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(cfg, []byte(p.containerdConfig(PauseImage)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(filepath.Join(bin, "containerd"), "--config", cfg, "config", "dump").CombinedOutput()
	if err != nil {
		t.Fatalf("containerd config dump: %v\n%s", err, out)
	}
	for _, want := range []string{p.containerdSock(), p.node("containerd", "root"), p.node("containerd", "opt"), p.cniConfDir(),
		filepath.Join(bin, "runc"), "restrict_oom_score_adj = true", "netns_mounts_under_state_dir = true", PauseImage} {
		if !strings.Contains(string(out), want) {
			t.Errorf("containerd's effective config lacks %q", want)
		}
	}
	if strings.Contains(string(out), "/opt/containerd") || strings.Contains(string(out), "/run/containerd/containerd.sock") {
		t.Errorf("containerd still uses a host default path:\n%s", out)
	}
}
