package history

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
)

// deadRunner starts a process, notes who it is, kills and reaps it, and returns its
// RunnerInfo: a pid on this host that no longer runs.
func deadRunner(t *testing.T) drill.RunnerInfo {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ticks, _, err := procStat(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	ri := drill.RunnerInfo{Host: CurrentRunner().Host, PID: cmd.Process.Pid, StartTicks: ticks}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	return ri
}

func TestMarkAbandoned(t *testing.T) {
	t.Parallel()
	runWithStores(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s, _ := openStore(t, b)
		now := time.Now().UTC()
		at := func(d time.Duration) func() time.Time { return func() time.Time { return now.Add(d) } }

		self := CurrentRunner()
		recycled := self
		recycled.StartTicks++ // this pid, but a process that started at another time
		runs := []struct {
			id        string
			runner    drill.RunnerInfo
			heartbeat time.Duration // age of its last heartbeat
			marked    bool
		}{
			{"dead-pid", deadRunner(t), 0, true},
			{"live-pid", self, -time.Hour, false}, // old heartbeat, but this host says it runs
			{"recycled-pid", recycled, 0, true},
			{"other-host-old", drill.RunnerInfo{Host: "elsewhere.invalid", PID: 7}, -10 * time.Minute, true},
			{"other-host-fresh", drill.RunnerInfo{Host: "elsewhere.invalid", PID: 8}, -10 * time.Second, false},
			{"no-host-old", drill.RunnerInfo{}, -10 * time.Minute, true},
		}
		for _, r := range runs {
			s.now = at(r.heartbeat)
			if err := s.Begin(ctx, running(r.id, "shop", now.Add(-time.Hour), r.runner)); err != nil {
				t.Fatal(err)
			}
		}
		finished := fullRecord("finished", now.Add(-2*time.Hour), nil)
		finished.Runner = drill.RunnerInfo{Host: "elsewhere.invalid", PID: 9}
		if err := s.Finish(ctx, finished); err != nil {
			t.Fatal(err)
		}

		s.now = at(0)
		ids, err := s.MarkAbandoned(ctx, ProcessAlive, 2*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(ids)
		var want []string
		for _, r := range runs {
			if r.marked {
				want = append(want, r.id)
			}
		}
		slices.Sort(want)
		if !slices.Equal(ids, want) {
			t.Errorf("marked %v, want %v", ids, want)
		}
		for _, r := range runs {
			got, err := s.Get(ctx, r.id)
			if err != nil {
				t.Fatal(err)
			}
			if !r.marked {
				if got.Result != drill.Running || got.FinishedAt != nil {
					t.Errorf("%s: %s, want still running", r.id, got.Result)
				}
				continue
			}
			if got.Result != drill.Aborted || got.FinishedAt == nil || !got.FinishedAt.Equal(now) ||
				!strings.HasPrefix(got.Message, "abandoned: ") || got.Steps[0].Result != drill.Aborted {
				t.Errorf("%s not marked as it should be: %+v", r.id, got)
			}
			t.Logf("%s: %s", r.id, got.Message)
		}
		if got, _ := s.Get(ctx, "finished"); got.Result != drill.Passed {
			t.Errorf("a finished run was touched: %s", got.Result)
		}

		// Nothing more to do a second time; staleAfter 0 never marks another host's run.
		s.now = at(time.Hour)
		if ids, err := s.MarkAbandoned(ctx, ProcessAlive, 0); err != nil || len(ids) != 0 {
			t.Errorf("second pass with staleAfter 0: %v, %v", ids, err)
		}
		// Once its heartbeat is stale, the other host's run goes too; ours never does.
		if ids, err := s.MarkAbandoned(ctx, nil, 2*time.Minute); err != nil || !slices.Equal(ids, []string{"other-host-fresh"}) {
			t.Errorf("third pass: %v, %v", ids, err)
		}
		// The seqs follow the order the runs were finished in.
		rows, err := s.db.Query(`SELECT id FROM runs WHERE seq IS NOT NULL ORDER BY seq`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var order []string
		for rows.Next() {
			var id string
			rows.Scan(&id)
			order = append(order, id)
		}
		if order[0] != "finished" || order[len(order)-1] != "other-host-fresh" {
			t.Errorf("seq order %v", order)
		}
	})
}

func TestProcessAlive(t *testing.T) {
	t.Parallel()
	self := CurrentRunner()
	if self.Host == "" || self.PID != os.Getpid() || self.StartTicks == 0 {
		t.Fatalf("CurrentRunner = %+v", self)
	}
	recycled := self
	recycled.StartTicks++
	noTicks := self
	noTicks.StartTicks = 0
	elsewhere := drill.RunnerInfo{Host: "elsewhere.invalid", PID: 1 << 22}

	// A zombie: killed but not yet reaped.
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ticks, _, _ := procStat(cmd.Process.Pid)
	zombie := drill.RunnerInfo{Host: self.Host, PID: cmd.Process.Pid, StartTicks: ticks}
	if !ProcessAlive(zombie) {
		t.Error("a running child counts as gone")
	}
	_ = cmd.Process.Kill()
	deadline := time.Now().Add(5 * time.Second)
	for _, state, _ := procStat(zombie.PID); state != 'Z' && time.Now().Before(deadline); _, state, _ = procStat(zombie.PID) {
		time.Sleep(10 * time.Millisecond)
	}
	zombieAlive := ProcessAlive(zombie)
	_ = cmd.Wait()

	for _, tc := range []struct {
		name string
		ri   drill.RunnerInfo
		want bool
	}{
		{"this process", self, true},
		{"this pid, no start time recorded", noTicks, true},
		{"recycled pid", recycled, false},
		{"dead pid", deadRunner(t), false},
		{"no pid", drill.RunnerInfo{Host: self.Host}, false},
		{"another host", elsewhere, true},
		{"zombie", zombie, zombieAlive},
	} {
		if got := ProcessAlive(tc.ri); got != tc.want {
			t.Errorf("%s: ProcessAlive(%+v) = %v, want %v", tc.name, tc.ri, got, tc.want)
		}
	}
	if zombieAlive {
		t.Error("a zombie counts as alive")
	}
}

// TestMarkAbandonedConcurrently: replicas that start at once and both look for abandoned runs
// each mark some and fail on none; every run is marked once.
func TestMarkAbandonedConcurrently(t *testing.T) {
	t.Parallel()
	runWithStores(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		first, dsn := openStore(t, b)
		dead := deadRunner(t)
		var want []string
		for i := range 200 {
			id := fmt.Sprintf("dead-%03d", i)
			if err := first.Begin(ctx, running(id, "shop", time.Now().UTC(), dead)); err != nil {
				t.Fatal(err)
			}
			want = append(want, id)
		}
		const replicas = 3
		marked := make([][]string, replicas)
		errs := make([]error, replicas)
		var wg sync.WaitGroup
		stores := make([]*Store, replicas)
		for i := range stores {
			stores[i] = openDSN(t, dsn)
		}
		for i, s := range stores {
			wg.Go(func() { marked[i], errs[i] = s.MarkAbandoned(ctx, ProcessAlive, time.Minute) })
		}
		wg.Wait()
		var all []string
		for i := range replicas {
			if errs[i] != nil {
				t.Errorf("replica %d: %v", i, errs[i])
			}
			all = append(all, marked[i]...)
		}
		slices.Sort(all)
		if !slices.Equal(all, want) {
			t.Errorf("marked %v, want each of %v once", all, want)
		}
	})
}
