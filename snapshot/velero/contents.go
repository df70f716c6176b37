package velero

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"

	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Item is one object of a backup, as its contents hold it.
type Item struct {
	// Resource as Velero names it: plural and group, "deployments.apps", "configmaps".
	Resource  string
	Namespace string // empty for cluster-scoped items
	Name      string
	Object    *unstructured.Unstructured
}

// BackupContents returns every object of the backup, one per resource, namespace and name,
// sorted by them. It reads the backup's tarball through a DownloadRequest as a stream.
func (c *Client) BackupContents(ctx context.Context, backup string) ([]Item, error) {
	var items []Item
	err := c.WalkBackupContents(ctx, backup, func(it Item) error {
		items = append(items, it)
		return nil
	})
	if err != nil {
		return nil, err
	}
	sortItems(items)
	return items, nil
}

// WalkBackupContents calls fn with each object of the backup in the tarball's order, holding no
// more than one decoded object beyond what fn keeps. An error from fn stops the walk and is
// returned.
func (c *Client) WalkBackupContents(ctx context.Context, backup string, fn func(Item) error) error {
	err := c.download(ctx, velerov1.DownloadTargetKindBackupContents, backup, func(r io.Reader) error {
		return ReadContents(r, fn)
	})
	if err != nil {
		return fmt.Errorf("backup contents: %w", err)
	}
	return nil
}

// ReadContents reads a Velero backup tarball (gzip-compressed tar) from r and calls fn once per
// object. Velero writes an object under resources/<resource>/namespaces/<ns>/<name>.json (and
// cluster/<name>.json for cluster-scoped ones), and since v1.4 once more under
// resources/<resource>/<version>-preferredversion/...; with the EnableAPIGroupVersions feature
// also under the other versions. Each object is reported once, from the first of those paths the
// tarball holds: the copies are identical, and the preferred version is what Velero restores.
// Objects only present under a non-preferred version are reported from that version.
func ReadContents(r io.Reader, fn func(Item) error) error {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("%w: not a gzip-compressed backup tarball: %w", ErrCorruptContents, err)
	}
	defer gz.Close()
	tr := tar.NewReader(gz)
	type key struct{ resource, namespace, name string }
	seen := map[key]bool{}
	// Objects seen only under a non-preferred version; reported at the end unless a preferred copy shows up.
	var others []Item
	otherIdx := map[key]int{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: read backup tarball: %w", ErrCorruptContents, err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		p, ok := parseItemPath(hdr.Name)
		if !ok {
			continue
		}
		k := key{p.resource, p.namespace, p.name}
		if seen[k] {
			continue
		}
		if p.otherVersion {
			if _, dup := otherIdx[k]; dup {
				continue
			}
		}
		obj := &unstructured.Unstructured{}
		b, err := io.ReadAll(tr)
		if err != nil {
			return fmt.Errorf("%w: read %s from backup tarball: %w", ErrCorruptContents, hdr.Name, err)
		}
		if err := obj.UnmarshalJSON(b); err != nil {
			return fmt.Errorf("%w: decode %s from backup tarball: %w", ErrCorruptContents, hdr.Name, err)
		}
		it := Item{Resource: p.resource, Namespace: p.namespace, Name: p.name, Object: obj}
		if p.otherVersion {
			otherIdx[k] = len(others)
			others = append(others, it)
			continue
		}
		seen[k] = true
		if err := fn(it); err != nil {
			return err
		}
	}
	for _, it := range others {
		if seen[key{it.Resource, it.Namespace, it.Name}] {
			continue
		}
		if err := fn(it); err != nil {
			return err
		}
	}
	return nil
}

type itemPath struct {
	resource, namespace, name string
	// otherVersion: under a version directory that is not the preferred one.
	otherVersion bool
}

// parseItemPath reads resources/<res>[/<version>]/{namespaces/<ns>|cluster}/<name>.json.
func parseItemPath(name string) (itemPath, bool) {
	name = strings.TrimPrefix(path.Clean(strings.TrimPrefix(name, "./")), "/")
	parts := strings.Split(name, "/")
	if len(parts) < 4 || parts[0] != velerov1.ResourcesDir || !strings.HasSuffix(parts[len(parts)-1], ".json") {
		return itemPath{}, false
	}
	p := itemPath{resource: parts[1]}
	rest := parts[2:]
	if rest[0] != velerov1.NamespaceScopedDir && rest[0] != velerov1.ClusterScopedDir {
		p.otherVersion = !strings.HasSuffix(rest[0], velerov1.PreferredVersionDir)
		rest = rest[1:]
	}
	switch {
	case len(rest) == 3 && rest[0] == velerov1.NamespaceScopedDir:
		p.namespace, p.name = rest[1], strings.TrimSuffix(rest[2], ".json")
	case len(rest) == 2 && rest[0] == velerov1.ClusterScopedDir:
		p.name = strings.TrimSuffix(rest[1], ".json")
	default:
		return itemPath{}, false
	}
	return p, p.name != ""
}

func sortItems(items []Item) {
	sort.Slice(items, func(i, j int) bool {
		a, b := items[i], items[j]
		if a.Resource != b.Resource {
			return a.Resource < b.Resource
		}
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
}
