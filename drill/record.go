package drill

import "time"

// Result of a run, a step or a check.
type Result string

const (
	// Running: the run is in flight (only ever stored, never final).
	Running Result = "running"
	// Passed: every check and objective met.
	Passed Result = "passed"
	// Failed: the drill ran and the backup is not good enough (a check or objective failed).
	Failed Result = "failed"
	// Error: the drill could not be carried out (a server unreachable, a timeout).
	Error Result = "error"
	// Aborted: interrupted, or found running when firedrill started again.
	Aborted Result = "aborted"
	// Skipped: a step or check that did not run because an earlier one did not pass; or a
	// scheduled run that did not start because the scenario's previous run was still in flight
	// (`serve` records it, with the reason in Message).
	Skipped Result = "skipped"
	// Missed: a scheduled run that `serve` could not start in time (it was down, or not the
	// leader, past the starting deadline). Recorded so that a gap in the schedule is evidence,
	// not silence.
	Missed Result = "missed"
)

// Record is the evidence of one run, as stored in the history and printed by `run -o json`.
// Its JSON field names are a documented interface; add fields, never rename them.
type Record struct {
	ID       string            `json:"id"`
	Scenario string            `json:"scenario"`
	Labels   map[string]string `json:"labels,omitempty"`
	// Annotations are the scenario's metadata.annotations, such as firedrill.dev/controls (the
	// audit controls a drill evidences, which reports group by).
	Annotations map[string]string `json:"annotations,omitempty"`
	Trigger     string            `json:"trigger"` // manual, schedule, api
	// ScheduledFor is the cron time a scheduled run (trigger "schedule") belongs to; nil for
	// other runs. The history allows one run per scenario and ScheduledFor, which is what keeps
	// two `serve` replicas from running the same scheduled drill twice.
	ScheduledFor *time.Time `json:"scheduledFor,omitempty"`
	Operator     string     `json:"operator"` // user@host for manual runs
	Result       Result     `json:"result"`
	Message      string     `json:"message,omitempty"` // why it did not pass, in one line
	StartedAt    time.Time  `json:"startedAt"`
	FinishedAt   *time.Time `json:"finishedAt,omitempty"`
	// RTOSeconds: from the start of the restore step to the moment every check had passed.
	// Nil when the restore did not complete or a check failed.
	RTOSeconds *float64 `json:"rtoSeconds"`
	// RPOSeconds: age of the restored data when the restore started.
	RPOSeconds *float64          `json:"rpoSeconds"`
	Objectives []ObjectiveRecord `json:"objectives"`
	Backup     BackupRecord      `json:"backup"`
	// Target says where the backup was restored; nil when the restore did not start.
	Target *TargetRecord `json:"target,omitempty"`
	Steps  []StepRecord  `json:"steps"`
	Checks []CheckRecord `json:"checks"`
	// Runner identifies the process that ran it, so that a crashed run can be told from a live
	// one: hostname, pid and the pid's start time.
	Runner RunnerInfo `json:"runner"`

	// Hash chain over all records in order (filled by the history store; see docs/history.md).
	PrevHash  string `json:"prevHash"`
	Hash      string `json:"hash"`
	Signature string `json:"signature,omitempty"`
}

// ObjectiveRecord compares a measured value with its target.
type ObjectiveRecord struct {
	Name          string   `json:"name"` // rto, rpo
	TargetSeconds float64  `json:"target"`
	ActualSeconds *float64 `json:"actual"` // nil when it could not be measured
	Met           bool     `json:"met"`
}

// BackupRecord says what was restored. Fields that do not apply to the backup's kind are empty.
type BackupRecord struct {
	Kind       string     `json:"kind"`             // etcd-snapshot, velero-backup
	Source     string     `json:"source,omitempty"` // take, dir, s3, velero-schedule, ...
	Name       string     `json:"name,omitempty"`   // file, object key or Velero backup name
	Location   string     `json:"location,omitempty"`
	Endpoint   string     `json:"endpoint,omitempty"` // the etcd endpoint a snapshot was taken from
	SHA256     string     `json:"sha256,omitempty"`
	SizeBytes  int64      `json:"sizeBytes,omitempty"`
	Revision   int64      `json:"revision,omitempty"`
	TotalKeys  int        `json:"totalKeys,omitempty"`
	Items      int        `json:"items,omitempty"` // objects in a Velero backup
	Version    string     `json:"version,omitempty"`
	CreatedAt  *time.Time `json:"createdAt,omitempty"`
	SelectedBy string     `json:"selectedBy,omitempty"` // how the newest was chosen (mtime, ...)
	// Volumes are the pod volumes whose files the backup copied (Velero's file-system backup).
	Volumes []VolumeRecord `json:"volumes,omitempty"`
	// Selection is how the backup was chosen among those its source holds (latestFrom), also when
	// none could be: the evidence that the choice was not cherry-picked, and how to repeat it.
	Selection *SelectionRecord `json:"selection,omitempty"`
}

// SelectionRecord is how a drill chose its backup: the candidates, in the order the choice
// indexes, and the method, window and seed that chose among them.
type SelectionRecord struct {
	Method string `json:"method"`           // latest, random
	Window string `json:"window,omitempty"` // as the scenario wrote it: 7d; empty: no window
	// NotBefore is the window's start: candidates were made at or after it.
	NotBefore *time.Time `json:"notBefore,omitempty"`
	// Seed chose a random candidate: Chosen is Seed mod CandidateCount. At most 2^53-1, so that
	// it stays exact where JSON numbers are doubles (jq, JavaScript).
	Seed *uint64 `json:"seed,omitempty"`
	// SeedGiven says the operator gave the seed (firedrill run --seed) rather than firedrill
	// drawing it: a choice someone could have steered.
	SeedGiven bool `json:"seedGiven,omitempty"`
	// CandidateCount is how many usable backups the window held; Candidates lists the first
	// MaxRecorded of them, newest first (of equal times, the name that sorts last first).
	CandidateCount int                  `json:"candidateCount"`
	Candidates     []SelectionCandidate `json:"candidates"`
	// Chosen indexes the candidates (also past those listed); nil when there was none. Backup names
	// the one chosen.
	Chosen *int   `json:"chosen,omitempty"`
	Backup string `json:"backup,omitempty"`
	// PassedOver are the backups within the window that are no candidates, and why (a Velero
	// backup that failed, expired or is being deleted); at most MaxRecorded.
	PassedOver []string `json:"passedOver,omitempty"`
	// Reproduce says how to repeat the choice.
	Reproduce string `json:"reproduce,omitempty"`
}

// SelectionCandidate is one backup a drill could have chosen.
type SelectionCandidate struct {
	Name string `json:"name"`
	// CreatedAt places it in the window: a file's mtime, an object's LastModified, a Velero
	// backup's start.
	CreatedAt time.Time `json:"createdAt"`
}

// MaxRecorded bounds the lists of a SelectionRecord, so that a source of thousands of backups
// does not make every record as large.
const MaxRecorded = 100

// VolumeRecord is one pod volume's files copied by a backup or a restore (a Velero
// PodVolumeBackup or PodVolumeRestore).
type VolumeRecord struct {
	Name      string  `json:"name"`
	Namespace string  `json:"namespace"`
	Pod       string  `json:"pod"`
	Volume    string  `json:"volume"`
	Phase     string  `json:"phase"`
	Bytes     int64   `json:"bytes"`
	Seconds   float64 `json:"seconds,omitempty"`
}

// TargetRecord is where a run restored the backup.
type TargetRecord struct {
	Kind string `json:"kind"` // scratchEtcd, scratchNamespace, cluster, kind
	// Namespaces maps each backed-up namespace to its scratch copy (Velero drills).
	Namespaces map[string]string `json:"namespaces,omitempty"`
	// Cluster names the cluster restored into when it is not the source: a kubeconfig and context,
	// or the kind cluster's name.
	Cluster string `json:"cluster,omitempty"`
	// Endpoints of the scratch etcd and API server (etcd drills); they exist only during the run.
	Endpoints []string `json:"endpoints,omitempty"`
	// Kept says the scratch resources were left for inspection by the cleanup policy.
	Kept bool `json:"kept,omitempty"`
	// Volumes are the pod volumes whose files the restore copied back.
	Volumes []VolumeRecord `json:"volumes,omitempty"`
}

// StepRecord is one step of a run: preflight, backup, restore, verify, cleanup, record.
type StepRecord struct {
	Name string `json:"name"`
	// Group is the restore group a restore or verify step belongs to (spec.restore.order).
	Group      string     `json:"group,omitempty"`
	Result     Result     `json:"result"`
	StartedAt  time.Time  `json:"startedAt"`
	FinishedAt *time.Time `json:"finishedAt,omitempty"`
	Message    string     `json:"message,omitempty"`
}

// Label names the step for people: "restore" or, in a group, "restore (database)".
func (s StepRecord) Label() string {
	if s.Group == "" {
		return s.Name
	}
	return s.Name + " (" + s.Group + ")"
}

// CheckRecord is the outcome of one check, with the measured values that back it.
type CheckRecord struct {
	Name string `json:"name"`
	// Group is the restore group the check belongs to (spec.restore.order); empty for the checks
	// of the whole drill.
	Group    string         `json:"group,omitempty"`
	Type     string         `json:"type"`
	Result   Result         `json:"result"`
	Message  string         `json:"message"`
	Evidence map[string]any `json:"evidence,omitempty"` // counts, digests, revisions; never secret values
	Seconds  float64        `json:"seconds"`
}

// RunnerInfo identifies the process that executed a run.
type RunnerInfo struct {
	Host       string `json:"host"`
	PID        int    `json:"pid"`
	StartTicks uint64 `json:"startTicks,omitempty"`
	Version    string `json:"version,omitempty"`
}
