package verify

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/firedrill-dev/firedrill/scenarios"
)

// CanaryCheck looks for the key the drill wrote to the live etcd just before taking the snapshot:
// found with its value, the snapshot holds the newest writes.
type CanaryCheck struct {
	checkName
	key string
}

var _ EtcdCheck = (*CanaryCheck)(nil)

// NewCanaryCheck builds a canary check. The key defaults to /firedrill/canary/<scenario>; the
// target's Canary, which says what was really written, takes precedence.
func NewCanaryCheck(name, scenarioName string, spec scenarios.CanaryCheck) *CanaryCheck {
	key := spec.Key
	if key == "" {
		key = scenarios.CanaryKeyPrefix + scenarioName
	}
	return &CanaryCheck{checkName: newCheckName(name, scenarios.CheckCanary), key: key}
}

// Run reads the canary key from the restored etcd, as restored.
func (c *CanaryCheck) Run(ctx context.Context, t *EtcdTarget) Outcome {
	ev := map[string]any{"key": c.key, "found": false}
	if t.Canary == nil {
		return errorOutcome(ev, "no canary was written: canary needs backup.etcd.take, which writes it to the live etcd just before the snapshot")
	}
	key := t.Canary.Key
	if key == "" {
		key = c.key
	}
	ev["key"], ev["writtenAt"] = key, t.Canary.WrittenAt
	if t.Restored == nil {
		return noRestore(ev)
	}
	rr, err := restoredRevision(ctx, t)
	if err != nil {
		return errorOutcome(ev, "read the restored etcd: %v", err)
	}
	ev["revision"] = rr.Rev
	resp, err := t.Restored.Get(ctx, key, clientv3.WithRev(rr.Rev))
	if err != nil {
		return errorOutcome(ev, "read canary %s from the restored etcd: %v", key, err)
	}
	if len(resp.Kvs) == 0 {
		return failedOutcome(ev, "canary %s, written to the live etcd at %s just before the snapshot, is not in the restored data: the snapshot misses the newest writes (taken from a lagging member, or an older file?)", key, t.Canary.WrittenAt.Format(time.RFC3339))
	}
	ev["found"] = true
	if string(resp.Kvs[0].Value) != t.Canary.Value {
		ev["valueMatches"] = false
		return failedOutcome(ev, "canary %s is in the restored data with another value than this drill wrote: the snapshot holds an older write of it, not the newest data", key)
	}
	ev["valueMatches"] = true
	if t.Canary.WrittenAt.IsZero() {
		return passedOutcome(ev, "canary %s is in the restored data", key)
	}
	return passedOutcome(ev, "canary %s written at %s is in the restored data", key, t.Canary.WrittenAt.Format(time.RFC3339))
}
