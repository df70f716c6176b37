package janitor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/scratch"
)

// workDir is a run's work directory with a readable owner file, and why it is due ("" if not).
type workDir struct {
	path   string
	owner  drill.Owner
	reason string
}

// workDirs reads the owner file of every run work directory in the work root. A directory is a
// run's only with an owner file naming that run (drill.ReadOwner); anything else there is left
// alone, whatever its name. One the cleanup kept is due once kept until has passed; another once
// its runner is gone — then its run's objects in clusters are due too, expired or not.
func (j *Janitor) workDirs(asOf time.Time) ([]workDir, error) {
	entries, err := os.ReadDir(j.cfg.WorkRoot)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read work root %s: %w", j.cfg.WorkRoot, err)
	}
	var out []workDir
	for _, e := range entries {
		// Not a symbolic link: what is removed must be the directory the run made here.
		if !e.IsDir() || !strings.HasPrefix(e.Name(), drill.WorkDirPrefix) {
			continue
		}
		path := filepath.Join(j.cfg.WorkRoot, e.Name())
		o, err := drill.ReadOwner(path)
		if err != nil {
			continue // not a run's, or one still writing its owner file: never judged by its name
		}
		d := workDir{path: path, owner: o}
		switch {
		case o.KeptUntil != nil:
			if !asOf.Before(*o.KeptUntil) {
				d.reason = scratch.DueExpired
			}
		case !j.cfg.Alive(o.Runner):
			d.reason = scratch.DueRunnerGone
		}
		out = append(out, d)
	}
	return out, nil
}

// sweepWorkDirs removes the due work directories, except those of runs something of which is
// still in a cluster: the next pass must still see their runner gone.
func (j *Janitor) sweepWorkDirs(p *pass, dirs []workDir) {
	for _, d := range dirs {
		if d.reason == "" {
			continue
		}
		it := Item{Kind: KindWorkDir, Name: d.path, Run: d.owner.Run, Reason: d.reason}
		switch d.reason {
		case scratch.DueExpired:
			e := d.owner.KeptUntil.UTC()
			it.ExpiredAt, it.Note = &e, "kept by the cleanup policy until then"
		case scratch.DueRunnerGone:
			it.Runner = &d.owner.Runner
		}
		if p.failed[d.owner.Run] {
			p.left(it, "something of its run is still in the cluster; its owner file tells the next pass the runner is gone")
			continue
		}
		if !p.opts.DryRun {
			// Read again: a runner that kept the directory, or another process that took it over,
			// since it was judged.
			o, err := drill.ReadOwner(d.path)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil || !sameOwner(o, d.owner) {
				continue
			}
			if err := os.RemoveAll(d.path); err != nil {
				p.fail(it, fmt.Errorf("remove work directory %s: %w", d.path, err))
				continue
			}
		}
		p.removed(it)
	}
}

func sameOwner(a, b drill.Owner) bool {
	ka, kb := a.KeptUntil, b.KeptUntil
	return a.Run == b.Run && a.Runner == b.Runner && a.StartedAt.Equal(b.StartedAt) &&
		(ka == nil) == (kb == nil) && (ka == nil || ka.Equal(*kb))
}
