package drill

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/scenarios"
)

// ownerSeen is a fakeDriver that reads the work directory's owner file when the run starts.
type ownerSeen struct {
	*fakeDriver
	owner   Owner
	err     error
	expires time.Time
}

func (o *ownerSeen) NewRun(sc *scenarios.Scenario, rc *RunContext) (Run, error) {
	o.owner, o.err = ReadOwner(rc.WorkDir)
	o.expires = rc.Expires
	return o.fakeDriver.NewRun(sc, rc)
}

func TestRunWritesOwnerFile(t *testing.T) {
	t.Parallel()
	me := RunnerInfo{Host: "this-host", PID: os.Getpid(), StartTicks: 4242}
	for _, tc := range []struct {
		name   string
		runner RunnerInfo
		policy scenarios.CleanupPolicy
	}{
		{"given runner, removed", me, scenarios.CleanupAlways},
		{"no runner given, kept", RunnerInfo{}, scenarios.CleanupNever},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := &ownerSeen{fakeDriver: &fakeDriver{checks: passing}}
			sc := scenario(0, 0, tc.policy)
			sc.Spec.Cleanup.KeepFor.Duration = 3 * time.Hour
			r := Runner{Runner: tc.runner, WorkRoot: t.TempDir(), CleanupTimeout: 2 * time.Minute}
			rec, err := r.Run(context.Background(), sc, d)
			if err != nil {
				t.Fatal(err)
			}
			if d.err != nil {
				t.Fatalf("owner file during the run: %v", d.err)
			}
			o := d.owner
			if o.Run != rec.ID || o.Scenario != "fake" || !o.StartedAt.Equal(rec.StartedAt) || o.KeptUntil != nil {
				t.Errorf("owner during the run: %+v (record %s)", o, rec.ID)
			}
			if o.Runner.PID != os.Getpid() || (tc.runner.PID != 0 && o.Runner != tc.runner) {
				t.Errorf("owner's runner %+v, want this process (%+v)", o.Runner, tc.runner)
			}
			// timeout 1m + cleanup 2m + the margin
			if want := rec.StartedAt.Add(3*time.Minute + ExpiryMargin); !d.expires.Equal(want) {
				t.Errorf("RunContext.Expires %s, want %s", d.expires, want)
			}

			kept, err := ReadOwner(d.workDirSeen)
			if tc.policy == scenarios.CleanupAlways {
				if _, serr := os.Stat(d.workDirSeen); !os.IsNotExist(serr) {
					t.Errorf("work dir not removed: %v", serr)
				}
				return
			}
			if err != nil {
				t.Fatalf("kept work dir: %v", err)
			}
			if kept.KeptUntil == nil || kept.KeptUntil.Sub(time.Now()) < 3*time.Hour-time.Minute || kept.KeptUntil.Sub(time.Now()) > 3*time.Hour {
				t.Errorf("kept until %v, want about 3h from now (keepFor)", kept.KeptUntil)
			}
			if st, err := os.Stat(filepath.Join(d.workDirSeen, OwnerFile)); err != nil || st.Mode().Perm() != 0o600 {
				t.Errorf("owner file mode: %v %v", st, err)
			}
		})
	}
}

func TestReadOwnerRefuses(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	dir := filepath.Join(root, WorkDirPrefix+"20260101-000000-abcdef-123")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadOwner(dir); !errors.Is(err, ErrNoOwner) {
		t.Errorf("no file: %v, want ErrNoOwner", err)
	}
	for _, tc := range []struct {
		name string
		o    Owner
		ok   bool
	}{
		{"its run", Owner{Run: "20260101-000000-abcdef", Runner: RunnerInfo{PID: 7}}, true},
		{"another run's", Owner{Run: "20260101-000000-fedcba", Runner: RunnerInfo{PID: 7}}, false},
		{"no pid", Owner{Run: "20260101-000000-abcdef"}, false},
	} {
		if err := WriteOwner(dir, tc.o); err != nil {
			t.Fatal(err)
		}
		_, err := ReadOwner(dir)
		if tc.ok != (err == nil) || (!tc.ok && !errors.Is(err, ErrNoOwner)) {
			t.Errorf("%s: ReadOwner = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, OwnerFile), []byte(`{"run": "20260101-000000-abcdef", "runner": {"pid": 7}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadOwner(dir); !errors.Is(err, ErrNoOwner) {
		t.Errorf("half a file: %v, want ErrNoOwner", err)
	}
}
