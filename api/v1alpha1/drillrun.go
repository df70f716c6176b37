package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DrillRunResource names DrillRuns for dynamic clients and informers.
var DrillRunResource = GroupVersion.WithResource("drillruns")

// DrillRun asks `firedrill serve` to run a scenario now, and its status follows that run until
// its record is sealed in the history's hash chain: the `kubectl create`/GitOps way to trigger a
// drill, where RBAC on drillruns decides who may. serve also creates one for every scheduled run
// of a Scenario resource, so that `kubectl get drillruns` lists those runs too. The history stays
// the system of record: status.recordHash names the record for an auditor to find.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:path=drillruns,singular=drillrun,categories=firedrill
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Scenario",type=string,JSONPath=`.spec.scenarioRef.name`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Step",type=string,JSONPath=`.status.step`,priority=1
// +kubebuilder:printcolumn:name="Result",type=string,JSONPath=`.status.result`
// +kubebuilder:printcolumn:name="Record",type=string,JSONPath=`.status.runID`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type DrillRun struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec says what to run. It cannot change: a DrillRun is one run; create another to run
	// again.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="a DrillRun's spec cannot change: it is one run; create another DrillRun to run again"
	Spec   DrillRunSpec   `json:"spec"`
	Status DrillRunStatus `json:"status,omitempty"`
}

// DrillRunSpec is what to run.
type DrillRunSpec struct {
	// ScenarioRef names the scenario to run: a Scenario in the DrillRun's own namespace (so that
	// who may create DrillRuns in a namespace may run its Scenarios, and no other namespace's),
	// or a scenario file serve loads (--scenarios), when no Scenario of that name exists.
	ScenarioRef ScenarioRef `json:"scenarioRef"`
	// Seed repeats a recorded random choice of the backup (latestFrom select: random): the
	// backup.selection.seed of an earlier run's record, as `firedrill run --seed` takes it.
	// Unset: a fresh seed.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=9007199254740991
	// +optional
	Seed *int64 `json:"seed,omitempty"`
	// Labels are added to the run's record (beside the scenario's own, which they cannot
	// change), for reports and notifications to group by: e.g. change: CHG-1234.
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
}

// ScenarioRef names a scenario by its metadata.name.
type ScenarioRef struct {
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`
}

// DrillRunPhase is where a DrillRun stands.
// +kubebuilder:validation:Enum=Pending;Running;Finished;Failed
type DrillRunPhase string

// Phases of a DrillRun.
const (
	// DrillRunPending: not started yet (waiting for serve's leader, or for the scenario's run in
	// flight to finish: the message says which).
	DrillRunPending DrillRunPhase = "Pending"
	// DrillRunRunning: the run has an id and is going on.
	DrillRunRunning DrillRunPhase = "Running"
	// DrillRunFinished: the run's record is final and sealed in the hash chain; status.result
	// is its verdict (passed, failed, error, aborted).
	DrillRunFinished DrillRunPhase = "Finished"
	// DrillRunFailed: no run took place (an unknown scenario, labels that are not labels); the
	// message says why and what to do. Fix it in a new DrillRun.
	DrillRunFailed DrillRunPhase = "Failed"
)

// Condition types of a DrillRun.
const (
	// ConditionComplete: True once the DrillRun is done (Finished or Failed), for `kubectl wait
	// --for=condition=Complete`.
	ConditionComplete = "Complete"
	// ConditionPassed: the run passed; set once it is Finished.
	ConditionPassed = "Passed"
)

// DrillRunStatus is the run as serve's leader found it in the history. Only the leader writes
// it, and only when it changed.
type DrillRunStatus struct {
	// Phase: Pending, Running, Finished or Failed.
	// +optional
	Phase DrillRunPhase `json:"phase,omitempty"`
	// Trigger of the run: drillrun (this DrillRun asked for it) or schedule (serve created this
	// DrillRun for a scheduled run).
	// +optional
	Trigger string `json:"trigger,omitempty"`
	// Step is the step in progress (preflight, backup, restore, verify, cleanup, record) as the
	// history last heard of it.
	// +optional
	Step string `json:"step,omitempty"`
	// Steps are the run's steps so far, as its record has them.
	// +listType=atomic
	// +optional
	Steps []DrillRunStep `json:"steps,omitempty"`
	// Result of the run once Finished: passed, failed, error or aborted.
	// +optional
	Result string `json:"result,omitempty"`
	// RunID is the id of the run's record (`firedrill history show ID`).
	// +optional
	RunID string `json:"runID,omitempty"`
	// RecordHash is the hash of the run's final record in the history's hash chain (`firedrill
	// history verify`), once it is sealed; the Scenario's status.lastRun.recordHash names the
	// same record.
	// +optional
	RecordHash string `json:"recordHash,omitempty"`
	// Message: why the run did not pass, or why no run took place, or what it waits for.
	// +optional
	Message string `json:"message,omitempty"`
	// StartedAt is when the run started; FinishedAt when its final record was written.
	// +optional
	StartedAt *metav1.Time `json:"startedAt,omitempty"`
	// +optional
	FinishedAt *metav1.Time `json:"finishedAt,omitempty"`
	// Conditions: Complete, Passed.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// DrillRunStep is one step of the run.
type DrillRunStep struct {
	// Name of the step, with its restore group: "restore (database)".
	Name string `json:"name"`
	// Result: running, passed, failed, error or skipped.
	// +optional
	Result string `json:"result,omitempty"`
	// StartedAt is when the step started.
	StartedAt metav1.Time `json:"startedAt"`
	// +optional
	FinishedAt *metav1.Time `json:"finishedAt,omitempty"`
}
