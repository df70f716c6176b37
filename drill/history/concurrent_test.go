package history

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/internal/pgtest"
)

// TestMain lets this test binary double as a second firedrill process writing the same
// history (see TestConcurrentProcesses), and stops the package's PostgreSQL.
func TestMain(m *testing.M) {
	if dsn := os.Getenv("FIREDRILL_HISTORY_TEST_WRITER"); dsn != "" {
		if err := writeRuns(dsn, os.Getenv("FIREDRILL_HISTORY_TEST_PREFIX"), 100); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	pgtest.Main(m)
}

// writeRuns opens the history at path and carries n runs through Begin, Update and Finish.
func writeRuns(path, prefix string, n int) error {
	ctx := context.Background()
	s, err := Open(ctx, path)
	if err != nil {
		return err
	}
	defer s.Close()
	return writeRunsTo(ctx, s, prefix, n)
}

func writeRunsTo(ctx context.Context, s *Store, prefix string, n int) error {
	// The engine works between writes; a writer that never pauses keeps the lock (SQLite's
	// lock is not fair), and the test would prove less than it says.
	pause := func() { time.Sleep(time.Millisecond) }
	for i := range n {
		pause()
		r := running(fmt.Sprintf("%s-%03d", prefix, i), prefix, time.Now().UTC(), CurrentRunner())
		if err := s.Begin(ctx, r); err != nil {
			return err
		}
		pause()
		r.Steps[0].Result = drill.Passed
		if err := s.Update(ctx, r); err != nil {
			return err
		}
		pause()
		r.Result, r.FinishedAt = drill.Passed, ptr(time.Now().UTC())
		if err := s.Finish(ctx, r); err != nil {
			return err
		}
	}
	return nil
}

// checkRuns asserts that the history holds n runs of each prefix, that seq numbers them
// 1..total without gaps or repeats, and that each writer's runs got increasing seqs in the
// order it finished them.
func checkRuns(t *testing.T, path string, n int, prefixes ...string) {
	t.Helper()
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rows, err := s.db.Query(`SELECT id, seq, scenario FROM runs ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	last := map[string]int{} // prefix -> index of its last run seen
	count := map[string]int{}
	switches, prev := 0, ""
	want := int64(1)
	for rows.Next() {
		var id, scenario string
		var seq int64
		if err := rows.Scan(&id, &seq, &scenario); err != nil {
			t.Fatal(err)
		}
		if seq != want {
			t.Fatalf("run %s has seq %d, want %d", id, seq, want)
		}
		want++
		i, _ := strconv.Atoi(id[len(scenario)+1:])
		if prev, ok := last[scenario]; ok && i <= prev {
			t.Errorf("%s finished after run %d of its writer but has a higher seq", id, prev)
		}
		last[scenario] = i
		count[scenario]++
		if prev != "" && scenario != prev {
			switches++
		}
		prev = scenario
	}
	t.Logf("the writers took turns %d times", switches)
	if switches < 2 {
		t.Errorf("the writers took turns %d times: they did not write at the same time", switches)
	}
	for _, p := range prefixes {
		if count[p] != n {
			t.Errorf("writer %s: %d runs in the history, want %d", p, count[p], n)
		}
	}
	if total := int(want - 1); total != n*len(prefixes) {
		t.Errorf("%d runs in the history, want %d", total, n*len(prefixes))
	}
}

// TestConcurrentStores: two Stores on one file, as two `firedrill run` at once would have,
// each write 100 runs at the same time.
func TestConcurrentStores(t *testing.T) {
	t.Parallel()
	runWithStores(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		_, path := openStore(t, b)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for w := range 2 {
			s, err := Open(ctx, path)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			wg.Go(func() { errs[w] = writeRunsTo(ctx, s, fmt.Sprintf("w%d", w), 100) })
		}
		wg.Wait()
		for w, err := range errs {
			if err != nil {
				t.Errorf("writer %d: %v", w, err)
			}
		}
		checkRuns(t, path, 100, "w0", "w1")
	})
}

// TestConcurrentProcesses: the same with two real processes, which also race to create the
// database and apply its migrations.
func TestConcurrentProcesses(t *testing.T) {
	t.Parallel()
	runWithStores(t, func(t *testing.T, b backend) {
		path := b.newDSN(t)
		if b.name == "sqlite" {
			path = filepath.Join(filepath.Dir(path), "new", "history.db")
		}
		var cmds []*exec.Cmd
		var outs []*strings.Builder
		for _, prefix := range []string{"p0", "p1"} {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "FIREDRILL_HISTORY_TEST_WRITER="+path, "FIREDRILL_HISTORY_TEST_PREFIX="+prefix)
			out := &strings.Builder{}
			cmd.Stdout, cmd.Stderr = out, out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			cmds, outs = append(cmds, cmd), append(outs, out)
		}
		for i, cmd := range cmds {
			if err := cmd.Wait(); err != nil {
				t.Errorf("writer p%d: %v\n%s", i, err, outs[i])
			}
		}
		checkRuns(t, path, 100, "p0", "p1")
	})
}
