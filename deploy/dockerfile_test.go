package deploy_test

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// No container engine here: TestDockerfile checks what can be checked without one — the paths
// the build uses exist, the build is static (CGO off) and stamps the version, the final stage is
// non-root and minimal, the kube-apiserver build matches the sandbox's — and, unless -short, that
// the image's build command itself succeeds with CGO_ENABLED=0.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	df := string(readFile(t, "Dockerfile"))
	stages := regexp.MustCompile(`(?m)^FROM `).FindAllStringIndex(df, -1)
	if len(stages) < 2 {
		t.Fatalf("not multi-stage: %d FROM lines", len(stages))
	}
	final := df[stages[len(stages)-1][0]:]
	for _, want := range []string{"CGO_ENABLED=0", "./cmd/firedrill", "-X main.version=${VERSION}", "-X main.commit=${COMMIT}",
		"ARG INCLUDE_KUBE_APISERVER=0", "k8s.io/kubernetes/cmd/kube-apiserver", "cd hack/tools/kube"} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	for _, want := range []string{"distroless/static", ":nonroot", "USER 65532:65532", `ENTRYPOINT ["/usr/local/bin/firedrill"]`} {
		if !strings.Contains(final, want) {
			t.Errorf("the final stage lacks %q", want)
		}
	}
	if strings.Contains(final, "RUN ") {
		t.Error("the final stage runs commands: it has no shell (distroless)")
	}
	// The manifests' runAsUser is the image's user.
	if !strings.Contains(string(readFile(t, "kustomize/base/deployment.yaml")), "runAsUser: 65532") {
		t.Error("the Deployment does not run as 65532, the image's nonroot user")
	}
	// Paths the build copies or builds from.
	for _, p := range []string{"../go.mod", "../go.sum", "../cmd/firedrill", "../hack/tools/kube/go.mod", "../hack/tools/kube/go.sum"} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("the Dockerfile needs %s: %v", p, err)
		}
	}
	// Same Kubernetes version as the sandbox's kube-apiserver.
	script := string(readFile(t, "../hack/sandbox-bin.sh"))
	m := regexp.MustCompile(`(?m)^k8sver=(v[0-9.]+)$`).FindStringSubmatch(script)
	if m == nil || !strings.Contains(df, "ARG KUBE_VERSION="+m[1]) {
		t.Errorf("Dockerfile's KUBE_VERSION is not hack/sandbox-bin.sh's %v", m)
	}
	// The Go version of the build image is at least go.mod's.
	gomod := string(readFile(t, "../go.mod"))
	gv := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(gomod)
	if gv == nil || !strings.Contains(df, "ARG GO_VERSION="+gv[1]) {
		t.Errorf("Dockerfile's GO_VERSION does not start with go.mod's go %v", gv)
	}

	if testing.Short() {
		return
	}
	out := filepath.Join(t.TempDir(), "firedrill")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=test -X main.commit=test", "-o", out, "../cmd/firedrill")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build ./cmd/firedrill: %v\n%s", err, b)
	}
	if b, err := exec.Command(out, "version").CombinedOutput(); err != nil || !strings.Contains(string(b), "test") {
		t.Errorf("the static binary does not run or is not stamped: %v\n%s", err, b)
	}
	// Static: no program interpreter (dynamic loader), nothing a distroless/static image lacks.
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary asks for a dynamic loader: it is not static")
		}
	}
}
