// Package sample chooses the backup a drill restores among those its source holds: the newest,
// or one at random within a window, so that over many drills older backups are restore-tested
// too. The choice is made over a recorded candidate list with a recorded seed: an auditor can see
// it was not cherry-picked, and repeat it.
package sample

import (
	"cmp"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/scenarios"
)

// Candidate is one backup of a source.
type Candidate struct {
	Name string
	// Time places it in the window and orders it: a file's mtime, an object's LastModified, a
	// Velero backup's start.
	Time time.Time
	// Unusable says why a drill cannot restore it (a Velero backup that failed, expired or is
	// being deleted); empty when it can.
	Unusable string
}

// Options say how to choose.
type Options struct {
	scenarios.Sampling
	// Seed repeats an earlier random choice; nil draws a fresh one.
	Seed *uint64
	// Now is when the window ends.
	Now time.Time
	// Scenario names the scenario in the record's Reproduce.
	Scenario string
}

// MaxSeed is the largest seed, 2^53-1: a larger one would not survive the JSON readers that hold
// numbers as doubles.
const MaxSeed = 1<<53 - 1

var (
	// ErrEmptyWindow says the window holds no usable backup: there is nothing to drill, which is
	// a finding about the backups (the drill fails), not a problem running it.
	ErrEmptyWindow = errors.New("no backup within the window")
	// ErrNoneUsable says that, without a window, none of the source's backups is usable.
	ErrNoneUsable = errors.New("no usable backup")
)

// Choose picks one of all. The usable candidates made within the window are ordered newest first
// (of equal times, the name that sorts last first); latest takes the first, random the one at
// Seed mod their count. It returns the index of the choice in all and the record of it, the
// record also with an error: ErrEmptyWindow when the window holds no usable backup, ErrNoneUsable
// when, without a window, none is usable.
func Choose(all []Candidate, opts Options) (int, *drill.SelectionRecord, error) {
	rec := &drill.SelectionRecord{Method: string(cmp.Or(opts.Select, scenarios.DefaultSelect)), Candidates: []drill.SelectionCandidate{}}
	var notBefore time.Time
	if w := opts.Window; w != nil && w.Duration > 0 {
		rec.Window = w.String()
		notBefore = opts.Now.Add(-w.Duration).UTC()
		rec.NotBefore = &notBefore
	}
	var usable, outside []int // indexes into all
	for i, c := range all {
		switch {
		case c.Time.Before(notBefore):
			if c.Unusable == "" {
				outside = append(outside, i)
			}
		case c.Unusable != "":
			if len(rec.PassedOver) == drill.MaxRecorded {
				rec.PassedOver[drill.MaxRecorded-1] = "… and more"
				continue
			}
			rec.PassedOver = append(rec.PassedOver, c.Name+": "+c.Unusable)
		default:
			usable = append(usable, i)
		}
	}
	newestFirst := func(a, b int) int {
		return cmp.Or(all[b].Time.Compare(all[a].Time), strings.Compare(all[b].Name, all[a].Name))
	}
	slices.SortFunc(usable, newestFirst)
	rec.CandidateCount = len(usable)
	for _, i := range usable[:min(len(usable), drill.MaxRecorded)] {
		rec.Candidates = append(rec.Candidates, drill.SelectionCandidate{Name: all[i].Name, CreatedAt: all[i].Time.UTC()})
	}

	pick := 0
	if rec.Method == string(scenarios.SelectRandom) {
		seed := opts.Seed
		rec.SeedGiven = seed != nil
		if seed == nil {
			s := NewSeed()
			seed = &s
		}
		rec.Seed = seed
		if len(usable) > 0 {
			pick = int(*seed % uint64(len(usable)))
			rec.Reproduce = fmt.Sprintf("firedrill run %s --seed %d chooses candidates[%d mod candidateCount] again: the same backup while the candidates are the same", opts.Scenario, *seed, *seed)
		}
	}
	if len(usable) == 0 {
		return -1, rec, emptyError(all, outside, rec, opts.Now)
	}
	rec.Chosen, rec.Backup = &pick, all[usable[pick]].Name
	return usable[pick], rec, nil
}

// emptyError says why there was no candidate and, with a window, how old the newest usable backup
// outside it is.
func emptyError(all []Candidate, outside []int, rec *drill.SelectionRecord, now time.Time) error {
	if rec.NotBefore == nil {
		if len(all) == 0 {
			return fmt.Errorf("%w: the source holds none", ErrNoneUsable)
		}
		return fmt.Errorf("%w: all %d are unusable: %s", ErrNoneUsable, len(all), strings.Join(rec.PassedOver, "; "))
	}
	why := "none was made in it"
	switch {
	case len(rec.PassedOver) > 0:
		why = "those made in it are unusable: " + strings.Join(rec.PassedOver, "; ")
	case len(all) == 0:
		why = "the source holds none"
	}
	if len(outside) > 0 {
		newest := slices.MaxFunc(outside, func(a, b int) int { return all[a].Time.Compare(all[b].Time) })
		why += fmt.Sprintf("; the newest usable backup, %s, is %s old", all[newest].Name, Age(now.Sub(all[newest].Time)))
	}
	return fmt.Errorf("%w (%s, since %s): RPO unbounded, there is nothing to drill: %s",
		ErrEmptyWindow, rec.Window, rec.NotBefore.Format(time.RFC3339), why)
}

// ForRun chooses among all for a run, as Choose does with the scenario's sampling s, the
// operator's seed and the time now, and says on the run's progress what it passed over and chose.
// An empty window comes back marked drill.Fail: a finding about the backups, not a problem running
// the drill. The record comes back with every error.
func ForRun(rc *drill.RunContext, s scenarios.Sampling, all []Candidate) (int, *drill.SelectionRecord, error) {
	o := Options{Sampling: s, Seed: rc.Seed, Now: time.Now()}
	if rc.Scenario != nil {
		o.Scenario = rc.Scenario.Metadata.Name
	}
	i, rec, err := Choose(all, o)
	for _, p := range rec.PassedOver {
		rc.Progress.Note("passed over: " + p)
	}
	switch {
	case errors.Is(err, ErrEmptyWindow):
		rc.Progress.Note(err.Error())
		return i, rec, drill.Fail(err)
	case err != nil:
		return i, rec, err
	}
	rc.Progress.Note(Chosen(rec))
	return i, rec, nil
}

// Says how s chooses, for plans: "the newest", "one at random of those made within 7d", ...
func Says(s scenarios.Sampling) string {
	what := "the newest"
	if s.Select == scenarios.SelectRandom {
		what = "one at random"
	}
	if w := s.Window; w != nil && w.Duration > 0 {
		return what + " of those made within " + w.String()
	}
	return what
}

// NewSeed draws a seed from the system's secure source, at most MaxSeed.
func NewSeed() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:]) & MaxSeed
}

// Age writes a backup's age for people: days and hours past two days, else as Go does.
func Age(d time.Duration) string {
	if d >= 48*time.Hour {
		return fmt.Sprintf("%dd%dh", d/(24*time.Hour), d%(24*time.Hour)/time.Hour)
	}
	return d.Round(time.Second).String()
}

// Describe writes a selection for a plan: the candidates (the first few), what was passed over,
// and the choice.
func Describe(rec *drill.SelectionRecord) []string {
	const shown = 10
	within := "no window"
	if rec.NotBefore != nil {
		within = fmt.Sprintf("within %s (since %s)", rec.Window, rec.NotBefore.Format(time.RFC3339))
	}
	out := []string{fmt.Sprintf("candidates: %d usable, %s, newest first", rec.CandidateCount, within)}
	for i, c := range rec.Candidates[:min(len(rec.Candidates), shown)] {
		out = append(out, fmt.Sprintf("[%d] %s (%s)", i, c.Name, c.CreatedAt.Format(time.RFC3339)))
	}
	if rec.CandidateCount > shown {
		out = append(out, fmt.Sprintf("… and %d more (plan -o json lists up to %d)", rec.CandidateCount-shown, drill.MaxRecorded))
	}
	for _, p := range rec.PassedOver {
		out = append(out, "passed over: "+p)
	}
	return append(out, Chosen(rec))
}

// Chosen says which candidate was chosen and how, in one line.
func Chosen(rec *drill.SelectionRecord) string {
	switch {
	case rec.Chosen == nil:
		return "chosen: none — the drill fails: there is no backup to drill"
	case rec.Seed != nil:
		how := "drawn"
		if rec.SeedGiven {
			how = "given"
		}
		return fmt.Sprintf("chosen at random: [%d] %s (seed %d, %s; %d mod %d = %d); run with --seed %d to drill this one",
			*rec.Chosen, rec.Backup, *rec.Seed, how, *rec.Seed, rec.CandidateCount, *rec.Chosen, *rec.Seed)
	default:
		return fmt.Sprintf("chosen: [%d] %s, the newest", *rec.Chosen, rec.Backup)
	}
}
