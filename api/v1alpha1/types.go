package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/firedrill-dev/firedrill/scenarios"
)

// GroupVersion is firedrill.dev/v1alpha1, a scenario file's apiVersion (scenarios.APIVersion).
var GroupVersion = schema.GroupVersion{Group: "firedrill.dev", Version: "v1alpha1"}

// ScenarioResource names Scenarios for dynamic clients and informers.
var ScenarioResource = GroupVersion.WithResource("scenarios")

// Scenario is a drill definition kept in the cluster: the same document as a scenario file,
// reviewed in Git and applied like any other manifest. serve validates it on every change and
// writes what it found, when it runs next and how the last run went into its status.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:path=scenarios,singular=scenario,categories=firedrill
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Schedule",type=string,JSONPath=`.spec.schedule`
// +kubebuilder:printcolumn:name="Valid",type=string,JSONPath=`.status.conditions[?(@.type=="Valid")].status`
// +kubebuilder:printcolumn:name="Last Result",type=string,JSONPath=`.status.lastRun.result`
// +kubebuilder:printcolumn:name="Last Run",type=date,JSONPath=`.status.lastRun.startedAt`
// +kubebuilder:printcolumn:name="Next Run",type=string,JSONPath=`.status.nextRunAt`
// +kubebuilder:printcolumn:name="RTO",type=string,JSONPath=`.status.lastRun.rto`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Scenario struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is a scenario file's spec (see scenarios/README.md).
	Spec   scenarios.Spec `json:"spec"`
	Status ScenarioStatus `json:"status,omitempty"`
}

// Condition types of a Scenario.
const (
	// ConditionValid: the current generation passes the scenarios validator; False names the
	// field and what is wrong, as `firedrill scenario validate` would.
	ConditionValid = "Valid"
	// ConditionReady: serve has a valid version of this scenario loaded (scheduled, or run on
	// demand): the current one, or the last one that was valid. False when the name is taken.
	ConditionReady = "Ready"
	// ConditionLastRunPassed: the last run (status.lastRun) passed.
	ConditionLastRunPassed = "LastRunPassed"
)

// ScenarioStatus is what serve's leader found and did. Only the leader writes it, and only
// when something changed.
type ScenarioStatus struct {
	// ObservedGeneration is the generation the conditions were computed for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Valid, Ready, LastRunPassed.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// LastRun is the newest finished run in the history (skipped runs aside).
	// +optional
	LastRun *RunSummary `json:"lastRun,omitempty"`
	// NextRunAt is when the schedule runs the scenario next; unset without a schedule.
	// +optional
	NextRunAt *metav1.Time `json:"nextRunAt,omitempty"`
}

// RunSummary is one run record of the history, in short.
type RunSummary struct {
	// ID of the run's record (`firedrill history show ID`).
	ID string `json:"id"`
	// Result: passed, failed, error, aborted or missed.
	Result string `json:"result"`
	// Trigger: schedule, api or manual.
	// +optional
	Trigger string `json:"trigger,omitempty"`
	// StartedAt is when the run started.
	StartedAt metav1.Time `json:"startedAt"`
	// FinishedAt is when its record was written.
	// +optional
	FinishedAt *metav1.Time `json:"finishedAt,omitempty"`
	// RTO and RPO measured, as durations ("1m32s"); empty when not measured.
	// +optional
	RTO string `json:"rto,omitempty"`
	// +optional
	RPO string `json:"rpo,omitempty"`
	// Reason is why the run did not pass (the record's message).
	// +optional
	Reason string `json:"reason,omitempty"`
	// RecordHash is the record's hash in the history's hash chain (`firedrill history verify`).
	// +optional
	RecordHash string `json:"recordHash,omitempty"`
}
