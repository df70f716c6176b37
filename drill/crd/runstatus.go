package crd

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/firedrill-dev/firedrill/api/v1alpha1"
	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/sample"
	"github.com/firedrill-dev/firedrill/drill/schedule"
	"github.com/firedrill-dev/firedrill/scenarios"
)

// RunStatus is a DrillRun's status as the run's record says: its steps while it runs, then its
// verdict and the record's hash in the chain. trigger is the DrillRun's (drillrun or schedule).
func RunStatus(r *drill.Record, trigger string) v1alpha1.DrillRunStatus {
	st := v1alpha1.DrillRunStatus{Phase: v1alpha1.DrillRunRunning, Trigger: trigger, RunID: r.ID, StartedAt: stamp(r.StartedAt)}
	for _, s := range r.Steps {
		st.Steps = append(st.Steps, v1alpha1.DrillRunStep{Name: s.Label(), Result: string(s.Result), StartedAt: *stamp(s.StartedAt), FinishedAt: stampPtr(s.FinishedAt)})
		if s.Result == drill.Running {
			st.Step = s.Label()
		}
	}
	if r.Result == drill.Running {
		if st.Step == "" && len(r.Steps) > 0 {
			st.Step = r.Steps[len(r.Steps)-1].Label() // between two steps
		}
		st.Conditions = []metav1.Condition{
			{Type: v1alpha1.ConditionComplete, Status: metav1.ConditionFalse, Reason: "Running", Message: "run " + r.ID + " is in flight"},
		}
		return st
	}
	st.Phase, st.Step = v1alpha1.DrillRunFinished, ""
	st.Result, st.Message, st.RecordHash = string(r.Result), clip(r.Message, maxMessage), r.Hash
	st.FinishedAt = stampPtr(r.FinishedAt)
	passed := metav1.Condition{Type: v1alpha1.ConditionPassed, Status: metav1.ConditionFalse, Reason: reasonOf(string(r.Result)), Message: clip("run "+r.ID+": "+r.Message, maxMessage)}
	if r.Result == drill.Passed {
		passed.Status, passed.Message = metav1.ConditionTrue, "run "+r.ID+" passed"
	}
	st.Conditions = []metav1.Condition{
		{Type: v1alpha1.ConditionComplete, Status: metav1.ConditionTrue, Reason: "Recorded", Message: "run " + r.ID + " is recorded in the history, hash " + r.Hash},
		passed,
	}
	return st
}

// refused is the status of a DrillRun that runs nothing: phase Failed, saying why.
func refused(msg string) v1alpha1.DrillRunStatus {
	msg = clip(msg, maxMessage)
	return v1alpha1.DrillRunStatus{Phase: v1alpha1.DrillRunFailed, Message: msg, Conditions: []metav1.Condition{
		{Type: v1alpha1.ConditionComplete, Status: metav1.ConditionTrue, Reason: "NotRun", Message: msg},
	}}
}

// pending is the status of a DrillRun that waits to start.
func pending(msg string) v1alpha1.DrillRunStatus {
	return v1alpha1.DrillRunStatus{Phase: v1alpha1.DrillRunPending, Message: msg, Conditions: []metav1.Condition{
		{Type: v1alpha1.ConditionComplete, Status: metav1.ConditionFalse, Reason: "Pending", Message: msg},
	}}
}

// claimed is the status that claims a DrillRun for run id: written on the version this replica
// saw, so that of two replicas that saw it only one succeeds.
func claimed(id string, now time.Time) v1alpha1.DrillRunStatus {
	return v1alpha1.DrillRunStatus{Phase: v1alpha1.DrillRunRunning, Trigger: schedule.KindDrillRun, RunID: id, StartedAt: stamp(now),
		Conditions: []metav1.Condition{{Type: v1alpha1.ConditionComplete, Status: metav1.ConditionFalse, Reason: "Running", Message: "run " + id + " is starting"}}}
}

// target is what a DrillRun's spec.scenarioRef resolves to: the scenario to run, or why none is
// (refusal), or why not yet (wait).
type target struct {
	name    string
	labels  map[string]string // the scenario's own
	refusal string
	wait    string
	// unknown: no scenario has the name (yet: a Scenario applied with its DrillRun may not
	// have been seen).
	unknown bool
}

// resolve finds the scenario a DrillRun in namespace ns names among entries (scenario files
// first, then Scenario resources, as Source.Merge returns them), and whether it is free to run
// (scheduled, the scheduler's view). The rule: a Scenario of the DrillRun's own namespace, else
// a scenario file; never another namespace's Scenario, so that RBAC on DrillRuns in a namespace
// decides who runs that namespace's Scenarios.
func resolve(ns string, spec v1alpha1.DrillRunSpec, entries []schedule.Entry, scheduled []schedule.Status) target {
	name := spec.ScenarioRef.Name
	own := FilePrefix + ns + "/" + name
	var holder, mine *schedule.Entry
	for i, e := range entries {
		if e.File == own {
			mine = &entries[i]
		}
		if holder == nil && e.Scenario != nil && e.Scenario.Metadata.Name == name {
			holder = &entries[i]
		}
	}
	switch {
	case mine != nil && holder != mine && mine.Scenario == nil && mine.Err != nil:
		return target{refusal: fmt.Sprintf("Scenario %s/%s cannot run: %v (kubectl -n %s get scenario %s -o yaml shows its conditions)", ns, name, mine.Err, ns, name)}
	case holder == nil:
		return target{unknown: true, refusal: fmt.Sprintf("no scenario %q: no Scenario of that name in namespace %s, and no scenario file of serve's has it; spec.scenarioRef.name takes a Scenario of the DrillRun's namespace (kubectl -n %s get scenarios)", name, ns, ns)}
	case strings.HasPrefix(holder.File, FilePrefix) && holder != mine:
		other, _, _ := strings.Cut(strings.TrimPrefix(holder.File, FilePrefix), "/")
		return target{refusal: fmt.Sprintf("scenario %q is a Scenario of namespace %s: a DrillRun runs a Scenario of its own namespace (%s) or a scenario file of serve's; create the DrillRun in namespace %s", name, other, ns, other)}
	}
	t := target{name: name, labels: holder.Scenario.Metadata.Labels}
	if err := scenarios.ValidateLabels("spec.labels", spec.Labels); err != nil {
		return target{refusal: problemText(err) + "; create a DrillRun with valid labels"}
	}
	for _, k := range slices.Sorted(maps.Keys(spec.Labels)) {
		if v, ok := t.labels[k]; ok && v != spec.Labels[k] {
			return target{refusal: fmt.Sprintf("spec.labels[%s]: the scenario's label %s is %q: a DrillRun adds labels to the run's record, it cannot change the scenario's; use another key", k, k, v)}
		}
	}
	if spec.Seed != nil && (*spec.Seed < 0 || uint64(*spec.Seed) > sample.MaxSeed) {
		return target{refusal: fmt.Sprintf("spec.seed %d: want a whole number from 0 to %d, as a run record's backup.selection.seed", *spec.Seed, uint64(sample.MaxSeed))}
	}
	loaded := false
	for _, s := range scheduled {
		loaded = loaded || (s.Name == name && s.File == holder.File)
		if s.Name == name && s.Running != "" {
			t.wait = fmt.Sprintf("waiting for run %s of %s to finish: a scenario runs once at a time", s.Running, name)
		} else if s.Name == name && s.Queued > 0 {
			t.wait = fmt.Sprintf("waiting for the queued run of %s: a scenario runs once at a time", name)
		}
	}
	if !loaded {
		// Seen by the watch, not yet handed to the scheduler (that is debounced).
		t.wait = fmt.Sprintf("waiting for serve to load scenario %q", name)
	}
	return t
}

// stamp is a time as a status holds it: UTC, whole seconds (what survives the round trip).
func stamp(t time.Time) *metav1.Time {
	return &metav1.Time{Time: t.UTC().Truncate(time.Second)}
}

func stampPtr(t *time.Time) *metav1.Time {
	if t == nil {
		return nil
	}
	return stamp(*t)
}
