// Package coverage answers the question firedrill exists for: which backups have never been
// restore-tested? It discovers what there is to drill — Velero Schedules and the namespaces
// they include, backups no schedule made, the etcd snapshot sources scenarios name — matches
// each with the scenarios that drill it, and joins that with the history: per item the newest
// passed drill, the newest drill of any result, and whether it passed within its coverage
// window.
//
// Discovery reads clusters through the Velero interface (coverage/clusters implements it with
// the Kubernetes API) and runs through a History (StoreHistory reads drill/history; Runs
// collects them from a report's single pass over the history), so that the join is plain code.
package coverage

import (
	"cmp"
	"strings"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/scenarios"
)

// Annotations read from scenarios (metadata.annotations) and from the objects discovered
// (Velero Schedules and Backups, Namespaces).
const (
	// ExcludeAnnotation on a Schedule, Backup or Namespace takes it out of coverage; its value is
	// the reason, which every output and report shows ("test data, recreated by CI").
	ExcludeAnnotation = "firedrill.dev/coverage-exclude"
	// WindowAnnotation is how recent a passed drill must be for the item to count as covered
	// ("7d", "36h"). On a Schedule, Backup or Namespace it is the item's own; on a scenario it
	// applies to every item the scenario drills (the shortest wins when several do).
	WindowAnnotation = "firedrill.dev/coverage-window"
)

// DefaultWindow is the coverage window of an item that names none (--within).
const DefaultWindow = 30 * 24 * time.Hour

// Kind is what sort of thing an item is.
type Kind string

// Kinds of items, in the order outputs list them.
const (
	// KindSchedule is a Velero Schedule: covered by drills of its backups (latestFrom.schedule,
	// or name: a backup it made).
	KindSchedule Kind = "velero-schedule"
	// KindBackup is a Velero backup no Schedule made (and firedrill did not make): covered by
	// drills that name it.
	KindBackup Kind = "velero-backup"
	// KindNamespace is a namespace a Schedule backs up, or a create drill backs up: covered by any
	// drill that restored it.
	KindNamespace Kind = "namespace"
	// KindEtcdDir, KindEtcdS3 and KindEtcdEndpoints are the etcd snapshot sources scenarios name:
	// latestFrom.dir, latestFrom.s3, take.endpoints.
	KindEtcdDir       Kind = "etcd-dir"
	KindEtcdS3        Kind = "etcd-s3"
	KindEtcdEndpoints Kind = "etcd-endpoints"
)

var kindOrder = map[Kind]int{KindSchedule: 0, KindBackup: 1, KindNamespace: 2, KindEtcdDir: 3, KindEtcdS3: 4, KindEtcdEndpoints: 5}

// Status is an item's coverage.
type Status string

const (
	// Covered: a drill of it passed within its window.
	Covered Status = "covered"
	// NotCovered: no drill of it passed within its window — never drilled, failing, or too long ago.
	NotCovered Status = "not covered"
	// Excluded: taken out on purpose, with a reason (ExcludeAnnotation).
	Excluded Status = "excluded"
)

var statusOrder = map[Status]int{NotCovered: 0, Covered: 1, Excluded: 2}

// Key identifies an item: Prometheus labels and report rows use these four values.
type Key struct {
	Kind Kind
	// Cluster is the kubeconfig context of a Velero item's cluster; empty for etcd sources.
	Cluster string
	// Namespace is Velero's namespace (schedules and backups); empty otherwise.
	Namespace string
	// Name is the schedule's, backup's or namespace's name; for an etcd source the source itself:
	// the directory, s3://bucket/prefix, or the endpoints separated by commas.
	Name string
}

// String is the kind and the path: "velero-schedule prod/velero/nightly".
func (k Key) String() string { return string(k.Kind) + " " + k.Path() }

// Path is the cluster, Velero namespace and name, empty parts left out: "prod/velero/nightly".
func (k Key) Path() string {
	var parts []string
	for _, p := range []string{k.Cluster, k.Namespace} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(append(parts, k.Name), "/")
}

// Item is one thing there is to drill, with what discovery found and, after Join, its coverage.
type Item struct {
	Kind      Kind   `json:"kind"`
	Cluster   string `json:"cluster,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`

	// Namespaces a schedule or backup backs up ("*": all of them).
	Namespaces []string `json:"namespaces,omitempty"`
	// Cron is a schedule's; Paused says Velero makes no backups of it now.
	Cron   string `json:"cron,omitempty"`
	Paused bool   `json:"paused,omitempty"`
	// Backups counts a schedule's Completed backups; LatestBackup is when the newest started
	// (for a backup item, when it started).
	Backups      int        `json:"backups,omitempty"`
	LatestBackup *time.Time `json:"latestBackup,omitempty"`
	// Note is something discovery found worth saying (a deleted Schedule whose backups remain).
	Note string `json:"note,omitempty"`
	// Scenarios are the scenarios that drill it, sorted.
	Scenarios []string `json:"scenarios"`
	// Excluded is the reason it was excluded (ExcludeAnnotation); empty when it was not.
	Excluded string `json:"excluded,omitempty"`
	// Window is how recent a passed drill must be; WindowFrom says where it came from.
	Window     scenarios.Duration `json:"window"`
	WindowFrom string             `json:"windowFrom"`

	// Status, LastPassed, LastDrill and Reason are Join's.
	Status Status `json:"status"`
	// LastPassed is its newest passed drill; LastDrill its newest drill that ran (passed,
	// failed, error or aborted): skipped and missed runs did not drill.
	LastPassed *Drill `json:"lastPassed,omitempty"`
	LastDrill  *Drill `json:"lastDrill,omitempty"`
	// Reason says, for an item not covered, why, in one line.
	Reason string `json:"reason,omitempty"`

	// window is the item's own or its scenarios' window, 0 for none: Join falls back to its
	// default.
	window time.Duration
}

// Key returns the item's key.
func (it *Item) Key() Key {
	return Key{Kind: it.Kind, Cluster: it.Cluster, Namespace: it.Namespace, Name: it.Name}
}

// Drill is one run of a scenario, as coverage reads it.
type Drill struct {
	ID       string       `json:"id"`
	Scenario string       `json:"scenario"`
	Result   drill.Result `json:"result"`
	At       time.Time    `json:"startedAt"`
}

// newer returns whichever of a and b started later (the greater id on a tie); nil counts as
// oldest.
func newer(a, b *Drill) *Drill {
	if b != nil && isNewer(a, b.At, b.ID) {
		return b
	}
	return a
}

// isNewer says whether a drill that started at with id is newer than cur (nil: yes).
func isNewer(cur *Drill, at time.Time, id string) bool {
	return cur == nil || at.After(cur.At) || (at.Equal(cur.At) && id > cur.ID)
}

// compareItems orders not covered before covered before excluded, then by kind and key.
func compareItems(a, b *Item) int {
	return cmp.Or(
		cmp.Compare(statusOrder[a.Status], statusOrder[b.Status]),
		cmp.Compare(kindOrder[a.Kind], kindOrder[b.Kind]),
		strings.Compare(a.Cluster, b.Cluster),
		strings.Compare(a.Namespace, b.Namespace),
		strings.Compare(a.Name, b.Name),
	)
}
