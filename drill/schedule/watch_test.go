package schedule

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/internal/testkit"
)

// scenarioYAML is a valid scenario; extra is appended to its spec.
func scenarioYAML(name, schedule, extra string) string {
	return fmt.Sprintf(`apiVersion: firedrill.dev/v1alpha1
kind: Scenario
metadata:
  name: %s
spec:
  schedule: %q
  backup:
    etcd:
      take:
        endpoints: ["http://127.0.0.1:2379"]%s
  restore:
    scratchEtcd: {}
  checks:
    - etcdIntegrity: {}
`, name, schedule, extra)
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// watching runs w and returns a function that waits for the first update whose entries
// satisfy ok.
func watching(t *testing.T, w *Watcher, reload <-chan struct{}) func(what string, ok func([]Entry) bool) []Entry {
	t.Helper()
	updates := make(chan []Entry, 100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, reload, func(es []Entry) { updates <- es }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watcher.Run: %v", err)
		}
	})
	return func(what string, ok func([]Entry) bool) []Entry {
		t.Helper()
		timeout := time.After(wait)
		for {
			select {
			case es := <-updates:
				if ok(es) {
					return es
				}
			case <-timeout:
				t.Fatalf("timed out waiting for an update with %s; entries now: %+v", what, w.Entries())
				return nil
			}
		}
	}
}

func byFile(es []Entry, name string) *Entry {
	for i := range es {
		if filepath.Base(es[i].File) == name {
			return &es[i]
		}
	}
	return nil
}

func schedOf(es []Entry, file string) string {
	if e := byFile(es, file); e != nil && e.Scenario != nil {
		return e.Scenario.Spec.Schedule
	}
	return ""
}

func TestWatcherReloads(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.yaml")
	write(t, a, scenarioYAML("shop", "@hourly", ""))
	write(t, filepath.Join(dir, "notes.txt"), "not a scenario")
	write(t, filepath.Join(dir, ".hidden.yaml"), "not: loaded")
	logs := &testkit.Buffer{}
	w, err := NewWatcher(dir, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	es := w.Entries()
	if len(es) != 1 || es[0].File != a || es[0].Err != nil || schedOf(es, "a.yaml") != "@hourly" || es[0].LoadedAt.IsZero() {
		t.Fatalf("entries = %+v, want a.yaml loaded", es)
	}
	next := watching(t, w, nil)
	next("the first load", func([]Entry) bool { return true })

	// Written in place.
	write(t, a, scenarioYAML("shop", "@daily", ""))
	next("a.yaml rewritten", func(es []Entry) bool { return schedOf(es, "a.yaml") == "@daily" })

	// Written the way editors do: a temporary file renamed over it.
	tmp := filepath.Join(dir, ".a.yaml.swp")
	write(t, tmp, scenarioYAML("shop", "0 3 * * *", ""))
	if err := os.Rename(tmp, a); err != nil {
		t.Fatal(err)
	}
	next("a.yaml renamed over", func(es []Entry) bool { return schedOf(es, "a.yaml") == "0 3 * * *" })

	// Broken: the last good version stays, with the error, logged once.
	write(t, a, scenarioYAML("shop", "0 4 * * *", "\n        bogus: 1"))
	es = next("a.yaml broken", func(es []Entry) bool { e := byFile(es, "a.yaml"); return e != nil && e.Err != nil })
	if e := byFile(es, "a.yaml"); e.Scenario == nil || e.Scenario.Spec.Schedule != "0 3 * * *" || !strings.Contains(e.Err.Error(), "bogus") {
		t.Errorf("broken entry = %+v, want the last good version (0 3 * * *) and an error naming the field", e)
	}
	if n := strings.Count(logs.String(), "scenario file does not load"); n != 1 {
		t.Errorf("error logged %d times, want once:\n%s", n, logs)
	}

	// A second file with the same name is refused; the first keeps it.
	write(t, filepath.Join(dir, "b.yml"), scenarioYAML("shop", "@weekly", ""))
	es = next("b.yml", func(es []Entry) bool { return byFile(es, "b.yml") != nil })
	if e := byFile(es, "b.yml"); e.Scenario != nil || e.Err == nil || !strings.Contains(e.Err.Error(), "also the name of "+a) {
		t.Errorf("duplicate entry = %+v, want no scenario and an error naming a.yaml", e)
	}
	if e := byFile(es, "a.yaml"); e.Scenario == nil {
		t.Errorf("a.yaml lost its scenario to the duplicate: %+v", e)
	}

	// Deleted: dropped.
	if err := os.Remove(a); err != nil {
		t.Fatal(err)
	}
	es = next("a.yaml gone", func(es []Entry) bool { return byFile(es, "a.yaml") == nil })
	// With a.yaml gone, b.yml's scenario is the only one of its name.
	if len(es) != 1 || schedOf(es, "b.yml") != "@weekly" {
		t.Errorf("entries = %+v, want only b.yml", es)
	}
	if !strings.Contains(logs.String(), "scenario file removed") {
		t.Errorf("removal not logged:\n%s", logs)
	}
}

func TestWatcherReloadsOnSignal(t *testing.T) {
	// The scenario names a CA file outside the directory: creating it changes nothing the
	// watch sees, so only the reload channel (SIGHUP) makes the scenario valid.
	dir, certs := t.TempDir(), t.TempDir()
	ca := filepath.Join(certs, "ca.pem")
	write(t, filepath.Join(dir, "tls.yaml"), scenarioYAML("tls", "@daily", "\n        tls: {caFile: "+ca+"}"))
	logs := &testkit.Buffer{}
	w, err := NewWatcher(dir, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if es := w.Entries(); len(es) != 1 || es[0].Scenario != nil || es[0].Err == nil || !strings.Contains(es[0].Err.Error(), ca) {
		t.Fatalf("entries = %+v, want tls.yaml refused for its missing CA file", es)
	}
	reload := make(chan struct{})
	next := watching(t, w, reload)
	next("the first load", func([]Entry) bool { return true })
	reload <- struct{}{}
	next("a reload", func([]Entry) bool { return true })
	if n := strings.Count(logs.String(), "scenario file does not load"); n != 1 {
		t.Errorf("unchanged error logged %d times, want once:\n%s", n, logs)
	}

	write(t, ca, "-----BEGIN CERTIFICATE-----\n")
	reload <- struct{}{}
	es := next("tls.yaml valid", func(es []Entry) bool { return len(es) == 1 && es[0].Err == nil })
	if es[0].Scenario == nil || es[0].Scenario.Metadata.Name != "tls" {
		t.Errorf("entry = %+v, want scenario tls", es[0])
	}
}

func TestWatcherRefusesMissingDir(t *testing.T) {
	_, err := NewWatcher(filepath.Join(t.TempDir(), "nope"), nil)
	if err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("NewWatcher of a missing directory: %v, want an error naming it", err)
	}
	w, err := NewWatcher(t.TempDir(), nil)
	if err != nil || len(w.Entries()) != 0 {
		t.Errorf("NewWatcher of an empty directory: %v, %+v; want no error, no entries", err, w.Entries())
	}
}

func TestWatcherFeedsScheduler(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.yaml"), scenarioYAML("shop", "@hourly", ""))
	w, err := NewWatcher(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(t, date("2026-03-02T10:00:00Z"), Options{})
	r.s.Update(w.Entries())
	next := watching(t, w, nil)
	next("the first load", func([]Entry) bool { return true })
	write(t, filepath.Join(dir, "a.yaml"), "apiVersion: firedrill.dev/v1alpha1\nkind: Scenario\nmetadata: {name: shop}\n")
	r.s.Update(next("a.yaml broken", func(es []Entry) bool { return len(es) == 1 && es[0].Err != nil }))
	st := r.status(t, "shop")
	if st.Schedule != "@hourly" || st.Err == "" || st.Interval != time.Hour {
		t.Errorf("status = %+v, want the last good @hourly version with the error", st)
	}
}
