// Package verify holds firedrill's checks: each looks at what a restore brought back and says,
// with evidence, whether it is the data that was backed up and whether it works. Checks never
// print, log or record secret values — only digests and counts.
package verify

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/client-go/rest"

	etcdsnap "github.com/firedrill-dev/firedrill/snapshot/etcd"
)

// Status of a check. The values are the same words the run record uses.
type Status string

const (
	StatusPassed  Status = "passed"
	StatusFailed  Status = "failed"  // the restored data is not good enough
	StatusError   Status = "error"   // the check could not be carried out
	StatusSkipped Status = "skipped" // not run, because an earlier step did not complete
)

// Outcome is what a check found: a status, a message a person can act on, and the measured values
// behind it (counts, digests, revisions) for the record.
type Outcome struct {
	Status   Status
	Message  string
	Evidence map[string]any
}

// Canary is a key the drill wrote to the live etcd just before taking the snapshot.
type Canary struct {
	Key       string
	Value     string
	WrittenAt time.Time
}

// EtcdTarget is everything the etcd checks look at.
type EtcdTarget struct {
	Scenario string
	// Snapshot is the file that was restored. etcdObjectsDecode reads the data from Snapshot.Path
	// when set (the file must still be there), which costs far less than asking the restored etcd;
	// it does not open a file the report says is damaged (hash mismatch, ReadError).
	Snapshot etcdsnap.Report
	// Restored is a client of the scratch etcd holding the restored snapshot. Nil when the restore
	// did not happen.
	Restored *clientv3.Client
	// RestoredRevision is the revision the restore left in the scratch etcd: the snapshot's
	// revision plus the bump; 0 when unknown. Checks read the restored etcd at this revision, so
	// that what a scratch kube-apiserver writes later is not taken for restored data; when 0 they
	// find it from the compaction the restore marked, or else take the snapshot's revision.
	RestoredRevision int64
	// Live is a client of the source etcd; nil when it is not reachable or not named (latestFrom).
	Live *clientv3.Client
	// APIServer reaches the scratch kube-apiserver serving the restored data; nil when none runs.
	APIServer *rest.Config
	// Canary written before the snapshot; nil when none was.
	Canary *Canary
	// EncryptionConfig is the path of an apiserver EncryptionConfiguration to decrypt values
	// encrypted at rest; empty when none was given.
	EncryptionConfig string
}

// Check is one check of a restored backup whose target is of type T.
type Check[T any] interface {
	Name() string
	Type() string
	Run(ctx context.Context, t T) Outcome
}

// EtcdCheck is one check of a restored etcd snapshot.
type EtcdCheck = Check[*EtcdTarget]
