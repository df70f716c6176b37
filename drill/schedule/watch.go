package schedule

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/firedrill-dev/firedrill/scenarios"
)

// debounce gathers the events of one save (editors write a temporary file and rename it, a
// ConfigMap volume swaps a symlink) into one reload.
const debounce = 200 * time.Millisecond

// Watcher keeps the scenarios of one directory.
type Watcher struct {
	dir string
	log *slog.Logger

	mu      sync.Mutex
	files   map[string]*file // by path
	entries []Entry
}

// file is what the watcher knows of one scenario file.
type file struct {
	entry Entry
	// logged is the problem last logged for the file, with the file's size and time: a
	// problem is logged once per change, not at every reload.
	logged string
}

// NewWatcher loads every *.yaml / *.yml scenario in dir once; it fails when dir cannot be read
// (a file that does not validate is not an error here: its Entry carries Err).
func NewWatcher(dir string, log *slog.Logger) (*Watcher, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Watcher{dir: dir, log: log, files: map[string]*file{}}
	if err := w.reload(); err != nil {
		return nil, err
	}
	return w, nil
}

// Entries returns the current set.
func (w *Watcher) Entries() []Entry {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.entries)
}

// Run reloads whenever a file in the directory changes (fsnotify, debounced) or reload
// receives (SIGHUP), and calls update with the full set after each reload; it returns when ctx
// is done. A file that no longer validates keeps its last good Scenario with Err set (and the
// error is logged); a deleted file drops it.
//
// Run reloads once when it starts watching, so that a change made since NewWatcher is not
// lost, and calls update with that set too. Any change in the directory reloads, not only one
// to a *.yaml file: a Kubernetes ConfigMap volume changes its files by renaming a hidden
// symlink (..data).
func (w *Watcher) Run(ctx context.Context, reload <-chan struct{}, update func([]Entry)) error {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch scenario directory %s: %w (raise fs.inotify.max_user_instances?)", w.dir, err)
	}
	defer fw.Close()
	if err := fw.Add(w.dir); err != nil {
		return fmt.Errorf("watch scenario directory %s: %w", w.dir, err)
	}
	load := func() {
		if err := w.reload(); err != nil {
			w.log.Error("cannot read the scenario directory: keeping the scenarios loaded before", "dir", w.dir, "err", err)
			return
		}
		update(w.Entries())
	}
	load()

	timer := time.NewTimer(debounce)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-fw.Events:
			if !ok {
				return fmt.Errorf("watch scenario directory %s: the watch ended", w.dir)
			}
			if ev.Op == fsnotify.Chmod {
				continue
			}
			timer.Reset(debounce)
		case err, ok := <-fw.Errors:
			if !ok {
				return fmt.Errorf("watch scenario directory %s: the watch ended", w.dir)
			}
			// An overflow loses events: reload to be sure.
			w.log.Warn("watching the scenario directory", "dir", w.dir, "err", err)
			timer.Reset(debounce)
		case <-reload:
			timer.Stop()
			w.log.Info("reloading scenarios", "dir", w.dir)
			load()
		case <-timer.C:
			load()
		}
	}
}

// reload reads the directory again; it fails only when the directory cannot be listed.
func (w *Watcher) reload() error {
	paths, err := scenarioFiles(w.dir)
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()

	now := time.Now()
	next := make(map[string]*file, len(paths))
	for _, p := range paths {
		old := w.files[p]
		f := &file{}
		if old != nil {
			f.logged = old.logged
		}
		sc, err := scenarios.Load(p)
		switch {
		case err == nil:
			f.entry = Entry{File: p, Scenario: sc, LoadedAt: now}
		case old != nil:
			f.entry = Entry{File: p, Scenario: old.entry.Scenario, Err: err, LoadedAt: old.entry.LoadedAt}
		default:
			f.entry = Entry{File: p, Err: err}
		}
		next[p] = f
	}

	// One name, one scenario: a file that already had the name keeps it, then files in order.
	owner := map[string]string{}
	claim := func(p string, f *file) {
		sc := f.entry.Scenario
		if sc == nil {
			return
		}
		if first, taken := owner[sc.Metadata.Name]; taken && first != p {
			dup := fmt.Errorf("%s: metadata.name %q is also the name of %s: give every scenario its own name; this file is not scheduled",
				p, sc.Metadata.Name, first)
			if f.entry.Err != nil {
				dup = fmt.Errorf("%w; %w", f.entry.Err, dup)
			}
			f.entry.Scenario, f.entry.Err = nil, dup
			return
		}
		owner[sc.Metadata.Name] = p
	}
	for _, p := range paths {
		if old := w.files[p]; old != nil && old.entry.Scenario != nil && next[p].entry.Scenario != nil &&
			old.entry.Scenario.Metadata.Name == next[p].entry.Scenario.Metadata.Name {
			claim(p, next[p])
		}
	}
	for _, p := range paths {
		if sc := next[p].entry.Scenario; sc != nil && owner[sc.Metadata.Name] != p {
			claim(p, next[p])
		}
	}

	entries := make([]Entry, 0, len(paths))
	for _, p := range paths {
		f := next[p]
		entries = append(entries, f.entry)
		if f.entry.Err == nil {
			if f.logged != "" {
				w.log.Info("scenario file loads again", "file", p, "scenario", f.entry.Scenario.Metadata.Name)
			}
			f.logged = ""
			continue
		}
		key := f.entry.Err.Error()
		if fi, err := os.Stat(p); err == nil {
			key = fmt.Sprintf("%d %d %s", fi.Size(), fi.ModTime().UnixNano(), key)
		}
		if key != f.logged {
			f.logged = key
			attrs := []any{"file", p, "err", f.entry.Err}
			if sc := f.entry.Scenario; sc != nil {
				w.log.Error("scenario file does not load: its last good version stays scheduled", append(attrs, "scenario", sc.Metadata.Name)...)
			} else {
				w.log.Error("scenario file does not load: it is not scheduled", attrs...)
			}
		}
	}
	for p, old := range w.files {
		if next[p] == nil {
			attrs := []any{"file", p}
			if sc := old.entry.Scenario; sc != nil {
				attrs = append(attrs, "scenario", sc.Metadata.Name)
			}
			w.log.Info("scenario file removed: no longer scheduled", attrs...)
		}
	}
	w.files, w.entries = next, entries
	return nil
}

// scenarioFiles lists the *.yaml and *.yml files directly in dir, sorted, as scenarios.Expand
// does, but an empty directory is no error: serve may start before its scenarios are written.
func scenarioFiles(dir string) ([]string, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read scenario directory: %w", err)
	}
	var out []string
	for _, de := range des {
		name := de.Name()
		ext := filepath.Ext(name)
		if strings.HasPrefix(name, ".") || (ext != ".yaml" && ext != ".yml") {
			continue
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err != nil || fi.IsDir() {
			continue // a dangling symlink or a directory named like a file
		}
		out = append(out, p)
	}
	return out, nil
}
