// Package image builds container images for the sandbox's real node from files on this machine
// (static binaries, mostly Go programs of this repository) as image tarballs that containerd
// imports: no base image, no registry, ever. Pods use them with imagePullPolicy Never or
// IfNotPresent.
package image

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// File is one file of an image.
type File struct {
	Path   string      // absolute path in the image
	Source string      // file on this machine
	Mode   os.FileMode // default 0755
}

// Spec describes an image of one layer on nothing.
type Spec struct {
	// Ref names the image, e.g. "firedrill.local/probe:v1". Pods refer to it by this name.
	Ref        string
	Files      []File
	Entrypoint []string
	Cmd        []string
	// Env is added to PATH=/ and HOME=/tmp.
	Env []string
	// User the processes run as (uid or uid:gid); empty means root.
	User string
}

// Write builds the image and writes it as a tarball to path (what `ctr images import` reads).
// Every image gets a /tmp (1777) and an /etc/passwd naming root and nobody; timestamps are zero
// so the same inputs give the same image digest.
func Write(spec Spec, path string) error {
	ref, err := name.ParseReference(spec.Ref)
	if err != nil {
		return fmt.Errorf("image %q: %w", spec.Ref, err)
	}
	layerTar, err := os.CreateTemp(filepath.Dir(path), ".layer-*.tar")
	if err != nil {
		return err
	}
	defer os.Remove(layerTar.Name())
	if err := writeLayer(layerTar, spec.Files); err != nil {
		layerTar.Close()
		return fmt.Errorf("image %s: %w", spec.Ref, err)
	}
	if err := layerTar.Close(); err != nil {
		return err
	}
	layer, err := tarball.LayerFromFile(layerTar.Name(), tarball.WithCompressionLevel(gzip.BestSpeed))
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = "amd64", "linux"
	cf.Config.Entrypoint = spec.Entrypoint
	cf.Config.Cmd = spec.Cmd
	cf.Config.Env = append([]string{"PATH=/", "HOME=/tmp"}, spec.Env...)
	cf.Config.User = spec.User
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := tarball.WriteToFile(tmp, ref, img); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write image %s: %w", spec.Ref, err)
	}
	return os.Rename(tmp, path)
}

func writeLayer(w io.Writer, files []File) error {
	tw := tar.NewWriter(w)
	hdr := func(h *tar.Header) error {
		h.ModTime, h.Format = time.Unix(0, 0), tar.FormatPAX
		return tw.WriteHeader(h)
	}
	dirs := map[string]bool{"tmp": true, "etc": true}
	for _, f := range files {
		for d := filepath.Dir(strings.TrimPrefix(f.Path, "/")); d != "." && d != "/"; d = filepath.Dir(d) {
			dirs[d] = true
		}
	}
	names := make([]string, 0, len(dirs))
	for d := range dirs {
		names = append(names, d)
	}
	sort.Strings(names) // parents before children
	for _, d := range names {
		mode := int64(0o755)
		if d == "tmp" {
			mode = 0o1777
		}
		if err := hdr(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: mode}); err != nil {
			return err
		}
	}
	passwd := []byte("root:x:0:0:root:/tmp:/firedrill-nologin\nnobody:x:65534:65534:nobody:/tmp:/firedrill-nologin\n")
	if err := hdr(&tar.Header{Typeflag: tar.TypeReg, Name: "etc/passwd", Mode: 0o644, Size: int64(len(passwd))}); err != nil {
		return err
	}
	if _, err := tw.Write(passwd); err != nil {
		return err
	}
	for _, f := range files {
		if err := addFile(tw, hdr, f); err != nil {
			return err
		}
	}
	return tw.Close()
}

func addFile(tw *tar.Writer, hdr func(*tar.Header) error, f File) error {
	src, err := os.Open(f.Source)
	if err != nil {
		return err
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		return err
	}
	mode := f.Mode
	if mode == 0 {
		mode = 0o755
	}
	if err := hdr(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(f.Path, "/"), Mode: int64(mode), Size: st.Size()}); err != nil {
		return err
	}
	_, err = io.Copy(tw, src)
	return err
}

// Fingerprint is a digest of everything Write reads for spec: the spec and the inputs' contents.
// A caller keeps it beside the tarball to skip rebuilding an image whose inputs did not change.
func Fingerprint(spec Spec) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%q %q %q %q %q\n", spec.Ref, spec.Entrypoint, spec.Cmd, spec.Env, spec.User)
	for _, f := range spec.Files {
		fmt.Fprintf(h, "%s %o\n", f.Path, f.Mode)
		src, err := os.Open(f.Source)
		if err != nil {
			return "", err
		}
		_, err = io.Copy(h, src)
		src.Close()
		if err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// BuildGo builds the Go package pkg of the module in dir as a static binary (CGO_ENABLED=0) at
// out, for an image.
func BuildGo(ctx context.Context, dir, pkg, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}
