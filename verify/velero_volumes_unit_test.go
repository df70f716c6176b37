package verify

import (
	"strings"
	"testing"

	"github.com/firedrill-dev/firedrill/internal/probe"
	"github.com/firedrill-dev/firedrill/scenarios"
)

func manifest(files ...probe.File) *probe.ManifestResult { return probe.ManifestOf(files) }

func TestDiffManifests(t *testing.T) {
	t.Parallel()
	a := probe.File{Path: "a", Size: 1, SHA256: "aa"}
	b := probe.File{Path: "b/orders.db", Size: 4096, SHA256: "bb"}
	b2 := probe.File{Path: "b/orders.db", Size: 4096, SHA256: "cc"}
	c := probe.File{Path: "c", Size: 3, SHA256: "dd"}
	for _, tc := range []struct {
		name     string
		src, got *probe.ManifestResult
		want     manifestDiff
	}{
		{"same", manifest(a, b), manifest(a, b), manifestDiff{}},
		{"empty restore", manifest(a, b), manifest(), manifestDiff{missing: 2, first: "a missing (1 bytes)"}},
		{"one changed", manifest(a, b, c), manifest(a, b2, c), manifestDiff{different: 1, first: "b/orders.db different (4096 bytes, sha256 cc; backed up 4096 bytes, sha256 bb)"}},
		{"extra", manifest(a), manifest(a, c), manifestDiff{extra: 1, first: "c extra (3 bytes), not in the backup"}},
	} {
		if got := diffManifests(tc.src, tc.got); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
	if manifest(a, b).Digest == manifest(a, b2).Digest {
		t.Error("a changed file does not change the digest")
	}
}

func TestFilterManifest(t *testing.T) {
	t.Parallel()
	m := manifest(probe.File{Path: "lost+found/x", Size: 1}, probe.File{Path: "orders.db", Size: 10}, probe.File{Path: "orders.db-wal", Size: 5})
	got := filterManifest(m, []string{"lost+found", "*-wal"})
	if len(got.Files) != 1 || got.Files[0].Path != "orders.db" || got.TotalBytes != 10 || got.Digest != manifest(probe.File{Path: "orders.db", Size: 10}).Digest {
		t.Errorf("filtered %+v", got)
	}
	if filterManifest(m, nil) != m {
		t.Error("no ignore globs should leave the manifest as it is")
	}
}

func TestVolumeDataSelects(t *testing.T) {
	t.Parallel()
	c, err := NewVolumeDataCheck("", scenarios.VolumeDataCheck{Volumes: []scenarios.VolumeRef{{Pod: "db-*", Volume: "data"}, {Namespace: "shop", Volume: "cache"}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		v    PodVolume
		want bool
	}{
		{PodVolume{Namespace: "shop", Pod: "db-0", Volume: "data"}, true},
		{PodVolume{Namespace: "shop", Pod: "web-1", Volume: "data"}, false},
		{PodVolume{Namespace: "shop", Pod: "web-1", Volume: "cache"}, true},
		{PodVolume{Namespace: "other", Pod: "web-1", Volume: "cache"}, false},
	} {
		if got := c.Selects(tc.v); got != tc.want {
			t.Errorf("%s: %v", tc.v.Key(), got)
		}
	}
	if _, err := NewVolumeDataCheck("", scenarios.VolumeDataCheck{Ignore: []string{"["}}); err == nil || !strings.Contains(err.Error(), "not a glob") {
		t.Errorf("bad glob: %v", err)
	}
}
