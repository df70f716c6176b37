package image

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// The images every real node gets. Their names never resolve in a registry (".local"), so a pod
// that names one runs only where it was imported.
const (
	// Pause holds each pod's namespaces (containerd's pinned sandbox image).
	Pause = "firedrill.local/pause:1"
	// Probe is firedrill-probe (cmd/firedrill-probe) as entrypoint: sleep, http, tcp, manifest,
	// fill, run.
	Probe = "firedrill.local/probe:1"
	// Velero holds /velero and /velero-restore-helper: node-agent, its data-path pods and the
	// restore helper init container.
	Velero = "firedrill.local/velero:v1.18.3"
	// Orders is the demo shop's order service (hack/demo/orders): orders in SQLite on a volume.
	Orders = "firedrill.local/orders:1"
	// Firedrill is firedrill itself (cmd/firedrill, static) as deploy/Dockerfile lays it out:
	// the image `serve --executor job` runs its drills' Jobs from.
	Firedrill = "firedrill.local/firedrill:dev"
)

// Tarball is the file name of ref's tarball in an images directory.
func Tarball(ref string) string {
	switch ref {
	case Pause:
		return "pause.tar"
	case Probe:
		return "probe.tar"
	case Velero:
		return "velero.tar"
	case Orders:
		return "orders.tar"
	case Firedrill:
		return "firedrill.tar"
	}
	return ""
}

// BuildStandard writes the tarballs of Pause, Probe, Orders and Firedrill (built from the firedrill checkout at
// repo) and, when binDir holds velero and velero-restore-helper, Velero, into outDir. An image
// whose inputs did not change since the last build is kept.
func BuildStandard(ctx context.Context, repo, binDir, outDir string, progress io.Writer) error {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	work, err := os.MkdirTemp(outDir, ".build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	for _, b := range []struct{ pkg, out string }{{"./sandbox/pause", "pause"}, {"./cmd/firedrill-probe", "firedrill-probe"}, {"./hack/demo/orders", "orders"}, {"./cmd/firedrill", "firedrill"}} {
		if err := BuildGo(ctx, repo, b.pkg, filepath.Join(work, b.out)); err != nil {
			return err
		}
	}
	specs := []Spec{
		{Ref: Pause, Files: []File{{Path: "/pause", Source: filepath.Join(work, "pause")}}, Entrypoint: []string{"/pause"}},
		{Ref: Probe, Files: []File{{Path: "/firedrill-probe", Source: filepath.Join(work, "firedrill-probe")}},
			Entrypoint: []string{"/firedrill-probe"}, Cmd: []string{"sleep"}},
		{Ref: Orders, Files: []File{{Path: "/orders", Source: filepath.Join(work, "orders")}},
			Entrypoint: []string{"/orders"}, Cmd: []string{"serve"}},
		{Ref: Firedrill, Files: []File{{Path: "/usr/local/bin/firedrill", Source: filepath.Join(work, "firedrill")}},
			Entrypoint: []string{"/usr/local/bin/firedrill"}, Env: []string{"FIREDRILL_BIN_DIR=/usr/local/bin"}, User: "65532:65532"},
	}
	velero, helper := filepath.Join(binDir, "velero"), filepath.Join(binDir, "velero-restore-helper")
	if _, err := os.Stat(helper); err == nil {
		specs = append(specs, Spec{Ref: Velero, Files: []File{
			{Path: "/velero", Source: velero}, {Path: "/velero-restore-helper", Source: helper},
		}})
	}
	for _, s := range specs {
		if err := writeIfChanged(s, filepath.Join(outDir, Tarball(s.Ref)), progress); err != nil {
			return err
		}
	}
	return nil
}

func writeIfChanged(s Spec, path string, progress io.Writer) error {
	fp, err := Fingerprint(s)
	if err != nil {
		return fmt.Errorf("image %s: %w", s.Ref, err)
	}
	stamp := path + ".fingerprint"
	if b, err := os.ReadFile(stamp); err == nil && string(b) == fp {
		if _, err := os.Stat(path); err == nil {
			fmt.Fprintf(progress, "image %s: up to date\n", s.Ref)
			return nil
		}
	}
	t0 := time.Now()
	if err := Write(s, path); err != nil {
		return err
	}
	fmt.Fprintf(progress, "image %s: built in %.1fs (%s)\n", s.Ref, time.Since(t0).Seconds(), path)
	return os.WriteFile(stamp, []byte(fp), 0o644)
}
