package etcd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Listed is a snapshot a source holds, before it is fetched: a file in a directory or an object
// under an S3 prefix. Which one a drill restores is not the adapter's choice (drill/sample makes
// it); Listed carries what that choice needs.
type Listed struct {
	Name string // the file's name in the directory, or the object's key
	// ModTime places it in time: the file's mtime, or the object's LastModified.
	ModTime time.Time
	Size    int64
	etag    string // S3: the object as listed is the object downloaded
}

// ErrNoneMatch is wrapped when a source holds no snapshot that matches the pattern.
var ErrNoneMatch = errors.New("no etcd snapshot matches")

// ListDir lists the snapshots in dir: the regular files whose name matches pattern
// (filepath.Match; "" matches every name), in name order. It never lists files still being
// written (NAME.part, as etcdctl and firedrill write them, or *.tmp), hidden files or
// directories; symbolic links count by their target. None is ErrNoneMatch, saying what to check.
func ListDir(dir, pattern string) ([]Listed, error) {
	if pattern == "" {
		pattern = "*"
	}
	if _, err := filepath.Match(pattern, ""); err != nil {
		return nil, fmt.Errorf("etcd snapshots in %s: bad pattern %q: %w", dir, pattern, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("etcd snapshots: directory %s does not exist: check the path and that the backup job writes there", dir)
		}
		return nil, fmt.Errorf("etcd snapshots: %w", err)
	}
	var out []Listed
	for _, e := range entries {
		name := e.Name()
		if isPartial(name) {
			continue
		}
		if ok, _ := filepath.Match(pattern, name); !ok {
			continue
		}
		info, err := os.Stat(filepath.Join(dir, name)) // follows links
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		out = append(out, Listed{Name: name, ModTime: info.ModTime(), Size: info.Size()})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no file in %s matches %q (of %d entries; *.part, *.tmp, hidden files and directories are never picked): check the pattern and that the backup job has run", ErrNoneMatch, dir, pattern, len(entries))
	}
	return out, nil
}

// FromDir hashes the snapshot l that ListDir found in dir (SelectedBy "mtime": its time is the
// file's modification time).
//
// The file is not checked: a damaged snapshot must reach the integrity check and fail the drill
// there, with a reason.
func FromDir(dir string, l Listed) (*Snapshot, error) {
	p := filepath.Join(dir, l.Name)
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("etcd snapshot: %w", err)
	}
	defer f.Close()
	d, err := digestReader(context.Background(), f)
	if err != nil {
		return nil, fmt.Errorf("etcd snapshot: read %s: %w", p, err)
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		abs = p
	}
	return &Snapshot{
		Path:       abs,
		SHA256:     d.sha256,
		SizeBytes:  d.size,
		Source:     SourceDir,
		Location:   filepath.Dir(abs),
		Name:       l.Name,
		CreatedAt:  l.ModTime,
		SelectedBy: "mtime",
	}, nil
}
