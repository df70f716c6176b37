package deploy_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestKrewManifest: the krew manifest, filled in as a release fills it, installs the binary as
// kubectl-firedrill on every platform; the binary installed so calls itself `kubectl firedrill`.
func TestKrewManifest(t *testing.T) {
	t.Parallel()
	tmpl := string(readFile(t, "krew/firedrill.yaml"))
	filled := regexp.MustCompile(`\{\{ addURIAndSha "([^"]+)" \.TagName \}\}`).ReplaceAllStringFunc(tmpl, func(m string) string {
		uri := regexp.MustCompile(`"([^"]+)"`).FindStringSubmatch(m)[1]
		return "uri: " + uri + "\n      sha256: " + strings.Repeat("0", 64)
	})
	filled = strings.ReplaceAll(filled, "{{ .TagName }}", "v0.1.0")
	var m struct {
		APIVersion, Kind string
		Metadata         struct{ Name string }
		Spec             struct {
			Version, Homepage, ShortDescription, Description, Caveats string
			Platforms                                                 []struct {
				Selector         struct{ MatchLabels map[string]string }
				URI, Sha256, Bin string
				Files            []struct{ From, To string }
			}
		}
	}
	if err := yaml.UnmarshalStrict([]byte(filled), &m); err != nil {
		t.Fatalf("krew/firedrill.yaml, filled in: %v\n%s", err, filled)
	}
	if m.APIVersion != "krew.googlecontainertools.github.com/v1alpha2" || m.Kind != "Plugin" || m.Metadata.Name != "firedrill" || m.Spec.Version != "v0.1.0" || len(m.Spec.Platforms) < 2 {
		t.Fatalf("manifest: %+v", m)
	}
	for _, p := range m.Spec.Platforms {
		sel := p.Selector.MatchLabels
		if p.Bin != "kubectl-firedrill" || len(p.Files) != 1 || p.Files[0].From != "firedrill" || p.Files[0].To != "kubectl-firedrill" ||
			!strings.Contains(p.URI, "/v0.1.0/firedrill_"+sel["os"]+"_"+sel["arch"]+".tar.gz") {
			t.Errorf("platform %v: %+v", sel, p)
		}
	}

	if firedrillBin == "" {
		t.Skip("-short: no firedrill binary")
	}
	plugin := filepath.Join(t.TempDir(), "kubectl-firedrill")
	if err := os.Symlink(firedrillBin, plugin); err != nil {
		t.Fatal(err)
	}
	if help := string(run(t, nil, plugin, "--help")); !strings.Contains(help, "Usage:\n  kubectl firedrill [command]") {
		t.Errorf("kubectl-firedrill --help:\n%s", help)
	}
}
