package drill

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/scenarios"
)

// fakeDriver scripts a driver's behaviour: the engine's bookkeeping (results, RTO/RPO, cleanup
// always, the check loop) is pure logic, tested here without servers; the real drivers are tested
// for real, against the sandbox, by drill/drilltest's contract suite.
type fakeDriver struct {
	newRun, preflight, backup, restore, cleanup error
	checks                                      []CheckRecord
	dataAge                                     time.Duration
	block                                       string // a step that waits for ctx to end
	panicIn                                     string // a step, or a check's name

	mu          sync.Mutex
	cleanedUp   bool
	keep        bool
	workDirSeen string
}

func (f *fakeDriver) Kind() string { return "fake" }

func (f *fakeDriver) NewRun(sc *scenarios.Scenario, rc *RunContext) (Run, error) {
	f.workDirSeen = rc.WorkDir
	if f.newRun != nil {
		return nil, f.newRun
	}
	return fakeRun{f}, nil
}

type fakeRun struct{ f *fakeDriver }

func (f *fakeDriver) act(ctx context.Context, step string, err error) error {
	if f.panicIn == step {
		panic("boom in " + step)
	}
	if f.block == step {
		<-ctx.Done()
		return ctx.Err()
	}
	return err
}

func (r fakeRun) Preflight(ctx context.Context) error {
	return r.f.act(ctx, StepPreflight, r.f.preflight)
}
func (r fakeRun) Backup(ctx context.Context) (BackupRecord, error) {
	t := time.Now().Add(-r.f.dataAge)
	return BackupRecord{Kind: "fake", CreatedAt: &t}, r.f.act(ctx, StepBackup, r.f.backup)
}
func (r fakeRun) Restore(ctx context.Context) error {
	return r.f.act(ctx, StepRestore, r.f.restore)
}
func (r fakeRun) Checks(restored bool) []Check {
	out := []Check{}
	for _, c := range r.f.checks {
		ck := Check{Name: c.Name, Type: c.Type, Description: "fake " + c.Name}
		if restored {
			ck.Run = func(ctx context.Context) CheckOutcome {
				_ = r.f.act(ctx, StepVerify, nil)
				_ = r.f.act(ctx, c.Name, nil)
				return CheckOutcome{Result: c.Result, Message: c.Message, Evidence: c.Evidence}
			}
		}
		out = append(out, ck)
	}
	return out
}
func (r fakeRun) Target() *TargetRecord { return &TargetRecord{Kind: "fake"} }
func (r fakeRun) Cleanup(ctx context.Context, keep bool) error {
	f := r.f
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanedUp, f.keep = true, keep
	if ctx.Err() != nil {
		return errors.New("cleanup got a dead context")
	}
	return f.cleanup
}
func (r fakeRun) Plan(p *Plan) { p.Backup = append(p.Backup, "fake backup") }

type memRecorder struct {
	mu                    sync.Mutex
	begun, updated, final []*Record
	failFinish            error
}

func (m *memRecorder) Begin(_ context.Context, r *Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.begun = append(m.begun, r)
	return nil
}
func (m *memRecorder) Update(_ context.Context, r *Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.updated = append(m.updated, r)
	return nil
}
func (m *memRecorder) Finish(_ context.Context, r *Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.final = append(m.final, r)
	return m.failFinish
}

func scenario(rto, rpo time.Duration, policy scenarios.CleanupPolicy) *scenarios.Scenario {
	return &scenarios.Scenario{Metadata: scenarios.Metadata{Name: "fake"}, Spec: scenarios.Spec{
		Timeout:    scenarios.Duration{Duration: time.Minute},
		Objectives: scenarios.Objectives{RTO: scenarios.Duration{Duration: rto}, RPO: scenarios.Duration{Duration: rpo}},
		Cleanup:    scenarios.Cleanup{Policy: policy},
	}}
}

var passing = []CheckRecord{{Name: "a", Type: "t", Result: Passed}, {Name: "b", Type: "t", Result: Passed}}

func stepResults(r *Record) string {
	var b []string
	for _, s := range r.Steps {
		b = append(b, s.Name+"="+string(s.Result))
	}
	return strings.Join(b, " ")
}

func TestRunPassesAndMeasures(t *testing.T) {
	t.Parallel()
	d := &fakeDriver{checks: passing, dataAge: time.Hour}
	rec := &memRecorder{}
	r := Runner{Recorder: rec, Trigger: "manual", Operator: "me@host"}
	got, err := r.Run(context.Background(), scenario(time.Minute, 2*time.Hour, scenarios.CleanupAlways), d)
	if err != nil {
		t.Fatal(err)
	}
	if got.Result != Passed || got.Message != "" {
		t.Fatalf("result %s %q", got.Result, got.Message)
	}
	if want := "preflight=passed backup=passed restore=passed verify=passed cleanup=passed record=passed"; stepResults(got) != want {
		t.Errorf("steps %s", stepResults(got))
	}
	if got.RPOSeconds == nil || *got.RPOSeconds < 3599 || *got.RPOSeconds > 3700 {
		t.Errorf("RPO %v, want about an hour", got.RPOSeconds)
	}
	if got.RTOSeconds == nil || *got.RTOSeconds < 0 || *got.RTOSeconds > 5 {
		t.Errorf("RTO %v", got.RTOSeconds)
	}
	if len(got.Objectives) != 2 || !got.Objectives[0].Met || !got.Objectives[1].Met {
		t.Errorf("objectives %+v", got.Objectives)
	}
	if !d.cleanedUp || d.keep {
		t.Errorf("cleanup ran %v keep %v", d.cleanedUp, d.keep)
	}
	if _, err := os.Stat(d.workDirSeen); !os.IsNotExist(err) {
		t.Errorf("work dir %s not removed: %v", d.workDirSeen, err)
	}
	if len(rec.begun) != 1 || rec.begun[0].Result != Running || len(rec.final) != 1 || rec.final[0].Result != Passed || got.FinishedAt == nil {
		t.Errorf("recorder saw begin %d final %d", len(rec.begun), len(rec.final))
	}
}

func TestRunResults(t *testing.T) {
	t.Parallel()
	failedCheck := []CheckRecord{{Name: "a", Result: Passed}, {Name: "b", Result: Failed, Message: "3 keys missing"}, {Name: "c", Result: Error, Message: "unreachable"}}
	erroredCheck := []CheckRecord{{Name: "a", Result: Passed}, {Name: "c", Result: Error, Message: "unreachable"}}
	for _, tc := range []struct {
		name      string
		d         *fakeDriver
		sc        *scenarios.Scenario
		want      Result
		msg       string
		steps     string
		keep      bool
		rtoIsNil  bool
		checkWant Result
	}{
		{name: "failed check", d: &fakeDriver{checks: failedCheck}, want: Failed, msg: `check "b" failed: 3 keys missing`,
			steps: "preflight=passed backup=passed restore=passed verify=failed cleanup=passed record=passed", rtoIsNil: true},
		{name: "errored check", d: &fakeDriver{checks: erroredCheck}, want: Error, msg: `check "c" could not be carried out: unreachable`,
			steps: "preflight=passed backup=passed restore=passed verify=error cleanup=passed record=passed", rtoIsNil: true},
		{name: "corrupt backup", d: &fakeDriver{checks: passing, restore: Fail(errors.New("snapshot integrity check failed"))}, want: Failed,
			msg: "snapshot integrity check failed", steps: "preflight=passed backup=passed restore=failed verify=skipped cleanup=passed record=passed",
			rtoIsNil: true, checkWant: Skipped},
		{name: "unreachable", d: &fakeDriver{checks: passing, preflight: errors.New("no etcd endpoint answers")}, want: Error,
			msg: "no etcd endpoint answers", steps: "preflight=error verify=skipped cleanup=passed record=passed", rtoIsNil: true, checkWant: Skipped},
		{name: "panic in driver", d: &fakeDriver{checks: passing, panicIn: StepBackup}, want: Error, msg: "backup: internal error: boom in backup",
			steps: "preflight=passed backup=error verify=skipped cleanup=passed record=passed", rtoIsNil: true},
		{name: "panic in a check", d: &fakeDriver{checks: passing, panicIn: "b"}, want: Error, msg: `check "b" could not be carried out: internal error in check: boom in b`,
			steps: "preflight=passed backup=passed restore=passed verify=error cleanup=passed record=passed", rtoIsNil: true},
		{name: "timeout", d: &fakeDriver{checks: passing, block: StepRestore}, sc: func() *scenarios.Scenario {
			s := scenario(0, 0, scenarios.CleanupAlways)
			s.Spec.Timeout.Duration = 50 * time.Millisecond
			return s
		}(), want: Error, msg: "drill timed out after 50ms (spec.timeout)",
			steps: "preflight=passed backup=passed restore=error verify=skipped cleanup=passed record=passed", rtoIsNil: true},
		{name: "rto objective missed", d: &fakeDriver{checks: passing}, sc: scenario(time.Nanosecond, 0, scenarios.CleanupAlways), want: Failed, msg: "objective RTO not met"},
		{name: "rpo objective missed", d: &fakeDriver{checks: passing, dataAge: 48 * time.Hour}, sc: scenario(0, 26*time.Hour, scenarios.CleanupAlways), want: Failed, msg: "objective RPO not met: 48h0m0s measured, target 26h0m0s"},
		{name: "cleanup fails a pass", d: &fakeDriver{checks: passing, cleanup: errors.New("namespace stuck")}, want: Error, msg: "cleanup: namespace stuck"},
		{name: "keep on failure", d: &fakeDriver{checks: failedCheck}, sc: scenario(0, 0, scenarios.CleanupOnSuccess), want: Failed, keep: true, rtoIsNil: true},
		{name: "keep never", d: &fakeDriver{checks: passing}, sc: scenario(0, 0, scenarios.CleanupNever), want: Passed, keep: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sc := tc.sc
			if sc == nil {
				sc = scenario(0, 0, scenarios.CleanupAlways)
			}
			got, err := (&Runner{}).Run(context.Background(), sc, tc.d)
			if err != nil {
				t.Fatal(err)
			}
			if got.Result != tc.want || !strings.Contains(got.Message, tc.msg) {
				t.Errorf("result %s %q, want %s containing %q", got.Result, got.Message, tc.want, tc.msg)
			}
			if tc.steps != "" && stepResults(got) != tc.steps {
				t.Errorf("steps %s\n want %s", stepResults(got), tc.steps)
			}
			if !tc.d.cleanedUp {
				t.Error("cleanup did not run")
			}
			if tc.d.keep != tc.keep {
				t.Errorf("keep %v, want %v", tc.d.keep, tc.keep)
			}
			if tc.rtoIsNil != (got.RTOSeconds == nil) {
				t.Errorf("RTO %v", got.RTOSeconds)
			}
			if tc.checkWant != "" {
				for _, c := range got.Checks {
					if c.Result != tc.checkWant {
						t.Errorf("check %s: %s, want %s", c.Name, c.Result, tc.checkWant)
					}
				}
			}
			if !tc.keep {
				if _, err := os.Stat(tc.d.workDirSeen); !os.IsNotExist(err) {
					t.Errorf("work dir left: %v", err)
				}
			} else {
				os.RemoveAll(tc.d.workDirSeen)
			}
		})
	}
}

// A scenario its driver cannot drill is refused before anything is touched, and still recorded.
func TestRunRefusesWhatTheDriverCannotDrill(t *testing.T) {
	t.Parallel()
	rec := &memRecorder{}
	d := &fakeDriver{checks: passing, newRun: errors.New("job does not check an etcd snapshot")}
	got, err := (&Runner{Recorder: rec}).Run(context.Background(), scenario(0, 0, scenarios.CleanupAlways), d)
	if !IsRefusal(err) || !strings.Contains(err.Error(), "scenario fake: job does not check an etcd snapshot") {
		t.Fatalf("err %v, want a refusal naming the scenario", err)
	}
	if got.Result != Error || stepResults(got) != "preflight=error verify=skipped cleanup=passed record=passed" || len(rec.final) != 1 {
		t.Errorf("result %s, steps %s, recorded %d", got.Result, stepResults(got), len(rec.final))
	}
	if _, err := os.Stat(d.workDirSeen); !os.IsNotExist(err) {
		t.Errorf("work dir left: %v", err)
	}
}

func TestRunInterruptedAbortsAndCleansUp(t *testing.T) {
	t.Parallel()
	d := &fakeDriver{checks: passing, block: StepRestore}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	got, err := (&Runner{}).Run(ctx, scenario(0, 0, scenarios.CleanupAlways), d)
	if err != nil {
		t.Fatal(err)
	}
	if got.Result != Aborted {
		t.Fatalf("result %s %q", got.Result, got.Message)
	}
	if want := "preflight=passed backup=passed restore=aborted verify=skipped cleanup=passed record=passed"; stepResults(got) != want {
		t.Errorf("steps %s", stepResults(got))
	}
	if !d.cleanedUp {
		t.Error("cleanup did not run after the interrupt")
	}
}

func TestRunReportsRecorderFailure(t *testing.T) {
	t.Parallel()
	rec := &memRecorder{failFinish: errors.New("disk full")}
	got, err := (&Runner{Recorder: rec}).Run(context.Background(), scenario(0, 0, scenarios.CleanupAlways), &fakeDriver{checks: passing})
	if !errors.Is(err, ErrRecord) || !strings.Contains(err.Error(), "disk full") || !strings.Contains(err.Error(), got.ID) {
		t.Fatalf("err %v", err)
	}
	if got.Result != Passed || got.Steps[len(got.Steps)-1].Result != Error {
		t.Errorf("record %s, last step %+v", got.Result, got.Steps[len(got.Steps)-1])
	}
}

func TestHeartbeatUpdatesRunningRecord(t *testing.T) {
	t.Parallel()
	rec := &memRecorder{}
	d := &fakeDriver{checks: passing, block: StepRestore}
	sc := scenario(0, 0, scenarios.CleanupAlways)
	sc.Spec.Timeout.Duration = 300 * time.Millisecond
	if _, err := (&Runner{Recorder: rec, HeartbeatEvery: 20 * time.Millisecond}).Run(context.Background(), sc, d); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.updated) < 3 {
		t.Fatalf("%d heartbeats in 300ms at 20ms", len(rec.updated))
	}
	for _, u := range rec.updated {
		if u.Result != Running {
			t.Errorf("heartbeat stored result %s", u.Result)
		}
	}
}

func TestNewRunIDSortsByTime(t *testing.T) {
	t.Parallel()
	a := NewRunID(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	b := NewRunID(time.Date(2026, 1, 2, 3, 4, 6, 0, time.UTC))
	if !strings.HasPrefix(a, "20260102-030405-") || len(a) != len("20260102-030405-abcdef") || a >= b {
		t.Errorf("ids %s %s", a, b)
	}
}

// groupedRun restores in groups; a group named in failGroup fails its check, one in brokenGroup
// does not restore.
type groupedRun struct {
	fakeRun
	names                  []string
	failGroup, brokenGroup string
	restored               *[]string
}

func (g groupedRun) Groups() []string { return g.names }
func (g groupedRun) RestoreGroup(ctx context.Context, i int) error {
	if g.names[i] == g.brokenGroup {
		return errors.New("velero restore failed")
	}
	*g.restored = append(*g.restored, g.names[i])
	return nil
}
func (g groupedRun) GroupChecks(i int, restored bool) []Check {
	c := Check{Name: g.names[i] + " answers", Type: "tcp"}
	if restored {
		res := Passed
		if g.names[i] == g.failGroup {
			res = Failed
		}
		c.Run = func(context.Context) CheckOutcome {
			return CheckOutcome{Result: res, Message: "connection " + string(res)}
		}
	}
	return []Check{c}
}

type groupedDriver struct {
	fakeDriver
	run groupedRun
}

func (d *groupedDriver) NewRun(sc *scenarios.Scenario, rc *RunContext) (Run, error) {
	d.workDirSeen = rc.WorkDir
	d.run.fakeRun = fakeRun{&d.fakeDriver}
	return d.run, nil
}

func TestRunGroupsInOrder(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, fail, broken string
		want               Result
		restored, steps    string
		msg                string
		checks             string
	}{
		{name: "all pass", want: Passed, restored: "database app",
			steps:  "preflight=passed backup=passed restore(database)=passed verify(database)=passed restore(app)=passed verify(app)=passed verify=passed cleanup=passed record=passed",
			checks: "database/database answers=passed app/app answers=passed /a=passed"},
		{name: "first group's check fails", fail: "database", want: Failed, restored: "database", msg: `stopped at group database: check "database answers" failed`,
			steps:  "preflight=passed backup=passed restore(database)=passed verify(database)=failed restore(app)=skipped verify=skipped cleanup=passed record=passed",
			checks: "database/database answers=failed app/app answers=skipped /a=skipped"},
		{name: "first group does not restore", broken: "database", want: Error, restored: "", msg: "velero restore failed",
			steps:  "preflight=passed backup=passed restore(database)=error restore(app)=skipped verify=skipped cleanup=passed record=passed",
			checks: "database/database answers=skipped app/app answers=skipped /a=skipped"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var restored []string
			d := &groupedDriver{fakeDriver: fakeDriver{checks: []CheckRecord{{Name: "a", Type: "t", Result: Passed}}},
				run: groupedRun{names: []string{"database", "app"}, failGroup: tc.fail, brokenGroup: tc.broken, restored: &restored}}
			got, err := (&Runner{}).Run(context.Background(), scenario(time.Hour, 0, scenarios.CleanupAlways), d)
			if err != nil {
				t.Fatal(err)
			}
			var steps, checks []string
			for _, s := range got.Steps {
				steps = append(steps, strings.ReplaceAll(s.Label(), " (", "(")+"="+string(s.Result))
			}
			for _, c := range got.Checks {
				checks = append(checks, c.Group+"/"+c.Name+"="+string(c.Result))
			}
			if got.Result != tc.want || !strings.Contains(got.Message, tc.msg) || strings.Join(restored, " ") != tc.restored {
				t.Errorf("result %s %q, restored %v", got.Result, got.Message, restored)
			}
			if s := strings.Join(steps, " "); s != tc.steps {
				t.Errorf("steps %s\n want %s", s, tc.steps)
			}
			if c := strings.Join(checks, " "); c != tc.checks {
				t.Errorf("checks %s\n want %s", c, tc.checks)
			}
			if (got.RTOSeconds != nil) != (tc.want == Passed) {
				t.Errorf("RTO %v for a %s run", got.RTOSeconds, got.Result)
			}
			// Whatever was not run says where the run stopped.
			for _, c := range got.Checks {
				if c.Result == Skipped && !strings.Contains(c.Message, tc.msg) {
					t.Errorf("check %s/%s skipped with %q, which does not say %q", c.Group, c.Name, c.Message, tc.msg)
				}
			}
			if !d.cleanedUp {
				t.Error("cleanup did not run")
			}
		})
	}
}
