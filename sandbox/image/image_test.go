package image_test

import (
	"archive/tar"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/firedrill-dev/firedrill/sandbox/image"
)

// The tarball holds one image, under its name, whose config runs the entrypoint and whose layer
// holds the files, a /tmp and an /etc/passwd; the same inputs give the same image.
func TestWriteMakesAnImageOfTheFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src := filepath.Join(dir, "app")
	if err := os.WriteFile(src, []byte("#!/bin/true\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	spec := image.Spec{Ref: "firedrill.local/test:1", Files: []image.File{{Path: "/bin/app", Source: src}},
		Entrypoint: []string{"/bin/app"}, Cmd: []string{"serve"}, Env: []string{"A=b"}}
	out := filepath.Join(dir, "image.tar")
	if err := image.Write(spec, out); err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag(spec.Ref)
	img, err := tarball.ImageFromPath(out, &tag)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.Entrypoint[0] != "/bin/app" || cf.Config.Cmd[0] != "serve" || cf.OS != "linux" || cf.Architecture != "amd64" ||
		len(cf.Config.Env) != 3 || cf.Config.Env[2] != "A=b" {
		t.Errorf("config %+v", cf.Config)
	}
	layers, _ := img.Layers()
	if len(layers) != 1 {
		t.Fatalf("%d layers", len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	found := map[string]int64{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		found[h.Name] = h.Mode
	}
	for name, mode := range map[string]int64{"bin/app": 0o755, "tmp/": 0o1777, "etc/passwd": 0o644} {
		if got, ok := found[name]; !ok || got != mode {
			t.Errorf("%s: mode %o (present %v), want %o; layer has %v", name, got, ok, mode, found)
		}
	}
	d1, _ := img.Digest()
	if err := image.Write(spec, out); err != nil {
		t.Fatal(err)
	}
	img2, _ := tarball.ImageFromPath(out, &tag)
	if d2, _ := img2.Digest(); d1 != d2 {
		t.Errorf("same inputs, different images: %s %s", d1, d2)
	}
}
