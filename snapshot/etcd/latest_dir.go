package etcd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// LatestFromDir picks the newest snapshot in dir by modification time (SelectedBy "mtime") among
// regular files whose name matches pattern (filepath.Match; "" matches every name), and hashes it.
// It never picks files still being written (NAME.part, as etcdctl and firedrill write them, or
// *.tmp), hidden files or directories; symbolic links count by their target. Of files with the
// same mtime the one whose name sorts last wins, so snapshots named by time still come out newest.
//
// The file is not checked: a damaged snapshot must reach the integrity check and fail the drill
// there, with a reason.
func LatestFromDir(dir, pattern string) (*Snapshot, error) {
	if pattern == "" {
		pattern = "*"
	}
	if _, err := filepath.Match(pattern, ""); err != nil {
		return nil, fmt.Errorf("latest etcd snapshot in %s: bad pattern %q: %w", dir, pattern, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("latest etcd snapshot: directory %s does not exist: check the path and that the backup job writes there", dir)
		}
		return nil, fmt.Errorf("latest etcd snapshot: %w", err)
	}
	var best os.FileInfo
	var bestPath string
	for _, e := range entries {
		name := e.Name()
		if isPartial(name) {
			continue
		}
		if ok, _ := filepath.Match(pattern, name); !ok {
			continue
		}
		p := filepath.Join(dir, name)
		info, err := os.Stat(p) // follows links
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		if best == nil || info.ModTime().After(best.ModTime()) ||
			(info.ModTime().Equal(best.ModTime()) && name > best.Name()) {
			best, bestPath = info, p
		}
	}
	if best == nil {
		return nil, fmt.Errorf("latest etcd snapshot: no file in %s matches %q (of %d entries; *.part, *.tmp, hidden files and directories are never picked): check the pattern and that the backup job has run", dir, pattern, len(entries))
	}
	f, err := os.Open(bestPath)
	if err != nil {
		return nil, fmt.Errorf("latest etcd snapshot: %w", err)
	}
	defer f.Close()
	d, err := digestReader(context.Background(), f)
	if err != nil {
		return nil, fmt.Errorf("latest etcd snapshot: read %s: %w", bestPath, err)
	}
	abs, err := filepath.Abs(bestPath)
	if err != nil {
		abs = bestPath
	}
	return &Snapshot{
		Path:       abs,
		SHA256:     d.sha256,
		SizeBytes:  d.size,
		Source:     "dir",
		Location:   filepath.Dir(abs),
		Name:       best.Name(),
		CreatedAt:  best.ModTime(),
		SelectedBy: "mtime",
	}, nil
}
