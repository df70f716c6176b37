package janitor

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/history"
	"github.com/firedrill-dev/firedrill/scratch"
)

// deadRunner is a process that ran on this host and has ended, as its owner file names it.
func deadRunner(t *testing.T) drill.RunnerInfo {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ri := history.CurrentRunner()
	ri.PID, ri.StartTicks = cmd.Process.Pid, 1 // the start time of the real one, had it lived
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	return ri
}

// makeWorkDir makes a run's work directory in root as the engine does, with an owner file.
func makeWorkDir(t *testing.T, root, run string, runner drill.RunnerInfo, keptUntil *time.Time) string {
	t.Helper()
	dir, err := os.MkdirTemp(root, drill.WorkDirPrefix+run+"-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "etcd-data", "member"), 0o700); err != nil {
		t.Fatal(err)
	}
	o := drill.Owner{Run: run, Scenario: "s", Runner: runner, StartedAt: time.Now().UTC(), KeptUntil: keptUntil}
	if err := drill.WriteOwner(dir, o); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestWorkDirs(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	me, dead := history.CurrentRunner(), deadRunner(t)
	now := time.Now()
	past, future := now.Add(-time.Minute), now.Add(time.Hour)

	running := makeWorkDir(t, root, "20260101-000000-running", me, nil)
	crashed := makeWorkDir(t, root, "20260101-000000-crashed", dead, nil)
	keptLive := makeWorkDir(t, root, "20260101-000000-kept", dead, &future)
	keptOver := makeWorkDir(t, root, "20260101-000000-keptover", dead, &past)
	otherHost := dead
	otherHost.Host = "another-host"
	elsewhere := makeWorkDir(t, root, "20260101-000000-elsewhere", otherHost, nil)

	// Not a run's, whatever the name: no owner file, one naming another run, a symbolic link
	// to a crashed run's directory, a directory without the prefix.
	noOwner := filepath.Join(root, drill.WorkDirPrefix+"20260101-000000-noowner-1")
	if err := os.Mkdir(noOwner, 0o700); err != nil {
		t.Fatal(err)
	}
	stolen := makeWorkDir(t, root, "20260101-000000-stolen", dead, nil)
	renamed := filepath.Join(root, drill.WorkDirPrefix+"20260101-000000-renamed-1")
	if err := os.Rename(stolen, renamed); err != nil {
		t.Fatal(err)
	}
	target := makeWorkDir(t, t.TempDir(), "20260101-000000-target", dead, nil)
	link := filepath.Join(root, drill.WorkDirPrefix+"20260101-000000-target-link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	unprefixed := filepath.Join(root, "scratch-20260101-000000-crashed")
	if err := os.Mkdir(unprefixed, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := drill.WriteOwner(unprefixed, drill.Owner{Run: "20260101-000000-crashed", Runner: dead}); err != nil {
		t.Fatal(err)
	}
	stay := []string{running, keptLive, elsewhere, noOwner, renamed, link, target, unprefixed}

	j, err := New(Config{WorkRoot: root, Alive: history.ProcessAlive})
	if err != nil {
		t.Fatal(err)
	}
	dry, err := j.Sweep(context.Background(), Options{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{crashed: scratch.DueRunnerGone, keptOver: scratch.DueExpired}
	if got := reasons(dry.Items); !mapsEqual(got, want) {
		t.Errorf("dry run: %v, want %v", got, want)
	}
	for _, it := range dry.Items {
		if it.Reason == scratch.DueRunnerGone && (it.Runner == nil || it.Runner.PID != dead.PID) {
			t.Errorf("%s: runner %+v, want pid %d", it.Name, it.Runner, dead.PID)
		}
		if it.Reason == scratch.DueExpired && (it.ExpiredAt == nil || !it.ExpiredAt.Equal(past.UTC().Truncate(0))) {
			t.Errorf("%s: expired at %v, want %v", it.Name, it.ExpiredAt, past)
		}
	}
	assertExist(t, append(stay, crashed, keptOver)...)

	// Judged two hours on, the kept directory is due too; the running one never is.
	later, err := j.Sweep(context.Background(), Options{DryRun: true, AsOf: now.Add(2 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	want[keptLive] = scratch.DueExpired
	if got := reasons(later.Items); !mapsEqual(got, want) {
		t.Errorf("as of two hours on: %v, want %v", got, want)
	}
	delete(want, keptLive)

	rep, err := j.Sweep(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := reasons(rep.Items); !mapsEqual(got, want) {
		t.Errorf("removed %v, want %v", got, want)
	}
	assertGone(t, crashed, keptOver)
	assertExist(t, stay...)
}

func reasons(items []Item) map[string]string {
	out := map[string]string{}
	for _, it := range items {
		out[it.Name] = it.Reason
	}
	return out
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func assertExist(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

func assertGone(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s still there: %v", p, err)
		}
	}
}

// A work directory whose owner file changed after it was judged (the runner kept it just then)
// is not removed.
func TestWorkDirChangedSinceJudged(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	dead := deadRunner(t)
	dir := makeWorkDir(t, root, "20260101-000000-race", dead, nil)
	j, err := New(Config{WorkRoot: root, Alive: history.ProcessAlive})
	if err != nil {
		t.Fatal(err)
	}
	dirs, err := j.workDirs(time.Now())
	if err != nil || len(dirs) != 1 || dirs[0].reason != scratch.DueRunnerGone {
		t.Fatalf("workDirs = %+v, %v", dirs, err)
	}
	o := dirs[0].owner
	until := time.Now().Add(time.Hour).UTC()
	o.KeptUntil = &until
	if err := drill.WriteOwner(dir, o); err != nil {
		t.Fatal(err)
	}
	p := &pass{failed: map[string]bool{}, rep: &Report{}}
	j.sweepWorkDirs(p, dirs)
	assertExist(t, dir)
	if len(p.rep.Items) != 0 || !slices.Equal(p.rep.Errors, nil) {
		t.Errorf("report %+v", p.rep)
	}
}
