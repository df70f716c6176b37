package sample

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/scenarios"
)

var now = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

func window(d time.Duration) *scenarios.Duration { return &scenarios.Duration{Duration: d} }

func opts(sel scenarios.SelectMethod, w *scenarios.Duration, seed *uint64) Options {
	return Options{Sampling: scenarios.Sampling{Select: sel, Window: w}, Seed: seed, Now: now, Scenario: "nightly"}
}

// daily is one snapshot a day for n days, the newest an hour old, given in no particular order.
func daily(n int) []Candidate {
	var out []Candidate
	for i := range n {
		j := (i * 7) % n // shuffled, and a permutation because 7 and n share no factor in these tests
		out = append(out, Candidate{Name: fmt.Sprintf("etcd-%02d.db", j), Time: now.Add(-time.Hour - time.Duration(j)*24*time.Hour)})
	}
	return out
}

func names(rec *drill.SelectionRecord) []string {
	var out []string
	for _, c := range rec.Candidates {
		out = append(out, c.Name)
	}
	return out
}

// The window keeps what was made since its start, newest first; of equal times the name that
// sorts last comes first, as latestFrom always picked.
func TestWindowOrdersCandidatesNewestFirst(t *testing.T) {
	t.Parallel()
	all := append(daily(10), Candidate{Name: "etcd-00b.db", Time: now.Add(-time.Hour)})
	i, rec, err := Choose(all, opts(scenarios.SelectLatest, window(7*24*time.Hour), nil))
	if err != nil {
		t.Fatal(err)
	}
	want := "etcd-00b.db etcd-00.db etcd-01.db etcd-02.db etcd-03.db etcd-04.db etcd-05.db etcd-06.db"
	if got := strings.Join(names(rec), " "); got != want {
		t.Errorf("candidates %s, want %s", got, want)
	}
	if all[i].Name != "etcd-00b.db" || rec.Chosen == nil || *rec.Chosen != 0 || rec.CandidateCount != 8 {
		t.Errorf("chose %s (record %+v), want the newest", all[i].Name, rec)
	}
	if rec.Method != "latest" || rec.Window != "7d" || !rec.NotBefore.Equal(now.Add(-7*24*time.Hour)) || rec.Seed != nil || rec.Reproduce != "" {
		t.Errorf("record %+v", rec)
	}
	// No window, no method: the newest of all, as before sampling existed.
	i, rec, err = Choose(all, Options{Now: now})
	if err != nil || all[i].Name != "etcd-00b.db" || rec.CandidateCount != 11 || rec.NotBefore != nil || rec.Method != "latest" {
		t.Errorf("no window: %s %+v %v", all[i].Name, rec, err)
	}
}

// A seed chooses candidates[seed mod n]: the same seed, the same backup; the record says how.
func TestSeedChoosesAndReproduces(t *testing.T) {
	t.Parallel()
	all := daily(10)
	for _, seed := range []uint64{0, 3, 13, 9999, MaxSeed} {
		i, rec, err := Choose(all, opts(scenarios.SelectRandom, window(7*24*time.Hour), &seed))
		if err != nil {
			t.Fatal(err)
		}
		k := int(seed % 7) // etcd-00 … etcd-06 are within 7d
		if all[i].Name != fmt.Sprintf("etcd-%02d.db", k) || *rec.Chosen != k || rec.Candidates[k].Name != all[i].Name {
			t.Errorf("seed %d chose %s (index %d), want etcd-%02d.db", seed, all[i].Name, *rec.Chosen, k)
		}
		if *rec.Seed != seed || !rec.SeedGiven || rec.Method != "random" {
			t.Errorf("record %+v", rec)
		}
		if want := fmt.Sprintf("firedrill run nightly --seed %d", seed); !strings.HasPrefix(rec.Reproduce, want) {
			t.Errorf("reproduce %q, want it to start %q", rec.Reproduce, want)
		}
		again, rec2, _ := Choose(all, opts(scenarios.SelectRandom, window(7*24*time.Hour), rec.Seed))
		if again != i || *rec2.Chosen != *rec.Chosen {
			t.Errorf("seed %d chose %d, then %d", seed, i, again)
		}
	}
}

// Drawn seeds spread the choice over every candidate: in 2,000 draws over ten, each is chosen
// (a fair draw misses one with probability 10·0.9^2000, about 1e-90), none more than twice its
// share.
func TestRandomChoosesEveryCandidate(t *testing.T) {
	t.Parallel()
	all := daily(10)
	count := map[string]int{}
	for range 2000 {
		i, rec, err := Choose(all, opts(scenarios.SelectRandom, nil, nil))
		if err != nil {
			t.Fatal(err)
		}
		if rec.SeedGiven || *rec.Seed > MaxSeed || uint64(*rec.Chosen) != *rec.Seed%10 {
			t.Fatalf("record %+v", rec)
		}
		count[all[i].Name]++
	}
	if len(count) != 10 {
		t.Errorf("chose %d of 10 candidates: %v", len(count), count)
	}
	for name, n := range count {
		if n > 400 {
			t.Errorf("%s chosen %d times of 2000", name, n)
		}
	}
}

// An empty window is ErrEmptyWindow, with the newest usable backup outside it and its age; the
// record is still there, with no choice.
func TestEmptyWindow(t *testing.T) {
	t.Parallel()
	old := []Candidate{
		{Name: "b-old", Time: now.Add(-9*24*time.Hour - 3*time.Hour)},
		{Name: "b-older", Time: now.Add(-20 * 24 * time.Hour)},
		{Name: "b-failed", Time: now.Add(-time.Hour), Unusable: "PartiallyFailed"},
		{Name: "b-failed-long-ago", Time: now.Add(-30 * 24 * time.Hour), Unusable: "Failed"},
	}
	for _, sel := range []scenarios.SelectMethod{scenarios.SelectLatest, scenarios.SelectRandom} {
		i, rec, err := Choose(old, opts(sel, window(7*24*time.Hour), nil))
		if !errors.Is(err, ErrEmptyWindow) || i != -1 {
			t.Fatalf("%s: %d %v, want ErrEmptyWindow", sel, i, err)
		}
		for _, want := range []string{"no backup within the window (7d, since 2026-11-20T10:00:00Z): RPO unbounded, there is nothing to drill",
			"b-failed: PartiallyFailed", "the newest usable backup, b-old, is 9d3h old"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: %q does not say %q", sel, err, want)
			}
		}
		if rec.Chosen != nil || rec.CandidateCount != 0 || len(rec.Candidates) != 0 || len(rec.PassedOver) != 1 {
			t.Errorf("%s: record %+v", sel, rec)
		}
	}
	if _, _, err := Choose(nil, opts(scenarios.SelectLatest, window(time.Hour), nil)); !errors.Is(err, ErrEmptyWindow) || !strings.Contains(err.Error(), "the source holds none") {
		t.Errorf("nothing at all: %v", err)
	}
	// Without a window only unusable backups are a different error: the caller's, as before.
	_, rec, err := Choose(old[2:], opts(scenarios.SelectLatest, nil, nil))
	if !errors.Is(err, ErrNoneUsable) || errors.Is(err, ErrEmptyWindow) || !strings.Contains(err.Error(), "all 2 are unusable: b-failed: PartiallyFailed; b-failed-long-ago: Failed") {
		t.Errorf("none usable: %v", err)
	}
	if len(rec.PassedOver) != 2 {
		t.Errorf("passed over %v", rec.PassedOver)
	}
}

// Unusable backups are passed over with their reason, and never chosen.
func TestUnusableArePassedOver(t *testing.T) {
	t.Parallel()
	all := []Candidate{
		{Name: "b3", Time: now.Add(-1 * time.Hour), Unusable: "FailedValidation"},
		{Name: "b2", Time: now.Add(-2 * time.Hour)},
		{Name: "b1", Time: now.Add(-3 * time.Hour), Unusable: "expired"},
		{Name: "b0", Time: now.Add(-4 * time.Hour)},
	}
	for seed := range uint64(20) {
		i, rec, err := Choose(all, opts(scenarios.SelectRandom, window(24*time.Hour), &seed))
		if err != nil || all[i].Unusable != "" || rec.CandidateCount != 2 {
			t.Fatalf("seed %d chose %+v (%v)", seed, all[i], err)
		}
		if strings.Join(rec.PassedOver, ", ") != "b3: FailedValidation, b1: expired" {
			t.Errorf("passed over %v", rec.PassedOver)
		}
	}
}

// Thousands of backups make no record larger than MaxRecorded entries a list; the count and the
// choice are still exact.
func TestRecordIsBounded(t *testing.T) {
	t.Parallel()
	var all []Candidate
	for i := range 3000 {
		c := Candidate{Name: fmt.Sprintf("b-%04d", i), Time: now.Add(-time.Duration(i) * time.Minute)}
		if i%2 == 1 {
			c.Unusable = "Failed"
		}
		all = append(all, c)
	}
	seed := uint64(1234)
	i, rec, err := Choose(all, opts(scenarios.SelectRandom, nil, &seed))
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Candidates) != drill.MaxRecorded || len(rec.PassedOver) != drill.MaxRecorded || rec.CandidateCount != 1500 {
		t.Errorf("%d candidates of %d, %d passed over", len(rec.Candidates), rec.CandidateCount, len(rec.PassedOver))
	}
	if *rec.Chosen != 1234 || all[i].Name != "b-2468" || rec.Backup != "b-2468" {
		t.Errorf("chose [%d] %s, want [1234] b-2468", *rec.Chosen, all[i].Name)
	}
	if last := rec.PassedOver[len(rec.PassedOver)-1]; last != "… and more" {
		t.Errorf("last passed over %q", last)
	}
}

func TestDescribe(t *testing.T) {
	t.Parallel()
	seed := uint64(12)
	_, rec, _ := Choose(daily(13), opts(scenarios.SelectRandom, window(30*24*time.Hour), &seed))
	lines := strings.Join(Describe(rec), "\n")
	for _, want := range []string{"candidates: 13 usable, within 30d (since 2026-10-28T10:00:00Z), newest first",
		"\n[0] etcd-00.db (2026-11-27T09:00:00Z)\n", "… and 3 more", "chosen at random: [12] etcd-12.db (seed 12, given; 12 mod 13 = 12); run with --seed 12"} {
		if !strings.Contains(lines, want) {
			t.Errorf("plan lines lack %q:\n%s", want, lines)
		}
	}
	_, rec, _ = Choose(nil, opts(scenarios.SelectLatest, window(time.Hour), nil))
	if lines := strings.Join(Describe(rec), "\n"); !strings.Contains(lines, "chosen: none — the drill fails") {
		t.Errorf("empty window plan:\n%s", lines)
	}
}

func TestAge(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{90 * time.Minute: "1h30m0s", 47 * time.Hour: "47h0m0s", 9*24*time.Hour + 3*time.Hour + 5*time.Minute: "9d3h"} {
		if got := Age(d); got != want {
			t.Errorf("Age(%s) = %s, want %s", d, got, want)
		}
	}
}

type notes struct {
	drill.NopProgress
	lines []string
}

func (n *notes) Note(s string) { n.lines = append(n.lines, s) }

// For a run: the operator's seed is used, what was passed over and chosen is said, and an empty
// window is a failure (drill.Fail), not an error.
func TestForRun(t *testing.T) {
	t.Parallel()
	seed := uint64(1)
	p := &notes{}
	rc := &drill.RunContext{Scenario: &scenarios.Scenario{Metadata: scenarios.Metadata{Name: "nightly"}}, Progress: p, Seed: &seed}
	all := []Candidate{{Name: "new", Time: time.Now().Add(-time.Hour)}, {Name: "old", Time: time.Now().Add(-2 * time.Hour)}, {Name: "bad", Time: time.Now(), Unusable: "Failed"}}
	i, rec, err := ForRun(rc, scenarios.Sampling{Select: scenarios.SelectRandom}, all)
	if err != nil || all[i].Name != "old" || !rec.SeedGiven || !strings.Contains(rec.Reproduce, "firedrill run nightly --seed 1") {
		t.Fatalf("chose %d %+v %v", i, rec, err)
	}
	if got := strings.Join(p.lines, "\n"); !strings.Contains(got, "passed over: bad: Failed") || !strings.Contains(got, "chosen at random: [1] old (seed 1, given") {
		t.Errorf("progress:\n%s", got)
	}
	_, rec, err = ForRun(rc, scenarios.Sampling{Select: scenarios.SelectLatest, Window: window(time.Minute)}, all[:2])
	if !drill.IsFailure(err) || !errors.Is(err, ErrEmptyWindow) || rec == nil || rec.Chosen != nil {
		t.Errorf("empty window: %v %+v", err, rec)
	}
	if _, _, err = ForRun(rc, scenarios.Sampling{}, all[2:]); err == nil || drill.IsFailure(err) || !errors.Is(err, ErrNoneUsable) {
		t.Errorf("none usable without a window: %v, want an error that is no failure", err)
	}
}
