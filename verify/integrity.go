package verify

import (
	"context"

	"github.com/firedrill-dev/firedrill/scenarios"
)

// IntegrityCheck judges the snapshot file before anything trusts it: etcd's appended SHA-256
// must be there and match, and etcd's storage must read the database.
type IntegrityCheck struct {
	checkName
	allowMissingHash bool
}

var _ EtcdCheck = (*IntegrityCheck)(nil)

// NewIntegrityCheck builds an etcdIntegrity check.
func NewIntegrityCheck(name string, spec scenarios.EtcdIntegrityCheck) *IntegrityCheck {
	return &IntegrityCheck{checkName: newCheckName(name, scenarios.CheckEtcdIntegrity), allowMissingHash: spec.AllowMissingHash}
}

// Run judges t.Snapshot; it reads nothing itself.
func (c *IntegrityCheck) Run(_ context.Context, t *EtcdTarget) Outcome {
	s := t.Snapshot
	ev := map[string]any{
		"sha256": s.SHA256, "sizeBytes": s.SizeBytes, "revision": s.Revision, "totalKeys": s.TotalKeys,
		"hasHash": s.HasHash, "hashMatches": s.HashMatches, "readable": s.Readable, "version": s.Version,
	}
	switch {
	case s.Path == "" && s.SHA256 == "" && s.SizeBytes == 0:
		return errorOutcome(ev, "no snapshot to check: the backup step did not produce one")
	case s.HasHash && !s.HashMatches:
		return failedOutcome(ev, "the SHA-256 etcd appended to the snapshot does not match its data: the file is corrupt; take a new snapshot and find out what damaged this one (storage, transfer)")
	case !s.Readable:
		reason := s.ReadError
		if reason == "" {
			reason = "no reason given"
		}
		return failedOutcome(ev, "etcd cannot read the snapshot (%s): it is damaged or not an etcd snapshot", reason)
	case !s.HasHash && !c.allowMissingHash:
		return failedOutcome(ev, "no integrity hash: this is a raw copy of member/snap/db, not a snapshot; take snapshots with `etcdctl snapshot save` or set allowMissingHash")
	case !s.HasHash:
		return passedOutcome(ev, "no integrity hash (a raw copy of member/snap/db, allowed by allowMissingHash); etcd reads it: revision %d, %d keys", s.Revision, s.TotalKeys)
	}
	return passedOutcome(ev, "integrity hash matches and etcd reads the snapshot: revision %d, %d keys, %d bytes", s.Revision, s.TotalKeys, s.SizeBytes)
}
