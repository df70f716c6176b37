package verify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/firedrill-dev/firedrill/scenarios"
)

// MatchesLiveCheck compares, per prefix, the keys and value digests of the restored data with the
// live etcd. At the snapshot's revision, when the live store still has it, they must be identical;
// once that revision is compacted away only current live data can be compared, and the drift is
// judged against maxDrift.
type MatchesLiveCheck struct {
	checkName
	prefixes []string
	maxDrift float64
}

var _ EtcdCheck = (*MatchesLiveCheck)(nil)

// NewMatchesLiveCheck builds an etcdMatchesLive check; maxDrift defaults to 0.05.
func NewMatchesLiveCheck(name string, spec scenarios.EtcdMatchesLiveCheck) (*MatchesLiveCheck, error) {
	if len(spec.Prefixes) == 0 {
		return nil, errors.New("etcdMatchesLive needs prefixes, e.g. [/registry/configmaps/]")
	}
	drift := scenarios.DefaultMaxDrift
	if spec.MaxDrift != nil {
		drift = *spec.MaxDrift
	}
	if drift < 0 || drift > 1 {
		return nil, fmt.Errorf("etcdMatchesLive: maxDrift %v is not a share between 0 and 1", drift)
	}
	return &MatchesLiveCheck{checkName: newCheckName(name, scenarios.CheckEtcdMatchesLive), prefixes: spec.Prefixes, maxDrift: drift}, nil
}

// Comparison modes.
const (
	modeAtRevision = "atRevision" // live read at the snapshot's revision: must be identical
	modeCurrent    = "current"    // that revision is compacted: drift is measured
)

// prefixDiff is what comparing one prefix found.
type prefixDiff struct {
	Mode             string   `json:"mode"`
	RestoredRevision int64    `json:"restoredRevision"`
	LiveRevision     int64    `json:"liveRevision"`
	RestoredKeys     int64    `json:"restoredKeys"`
	LiveKeys         int64    `json:"liveKeys"`
	OnlyRestored     int64    `json:"onlyRestored"`
	OnlyLive         int64    `json:"onlyLive"`
	Changed          int64    `json:"changed"`
	Total            int64    `json:"total"` // keys in either store
	Drift            float64  `json:"drift"` // (onlyRestored+onlyLive+changed)/total
	RestoredDigest   string   `json:"restoredDigest"`
	LiveDigest       string   `json:"liveDigest"`
	FirstDifferences []string `json:"firstDifferences,omitempty"`
	Error            string   `json:"error,omitempty"`
}

func (d *prefixDiff) differing() int64 { return d.OnlyRestored + d.OnlyLive + d.Changed }

// Run compares every prefix and reports all of them, failed, errored or passed.
func (c *MatchesLiveCheck) Run(ctx context.Context, t *EtcdTarget) Outcome {
	ev := map[string]any{"prefixes": c.prefixes, "maxDrift": c.maxDrift, "snapshotRevision": t.Snapshot.Revision}
	if t.Live == nil {
		return errorOutcome(ev, "etcdMatchesLive needs the live etcd: it compares with backup.etcd.take's endpoints, which were not given or not reachable (latestFrom drills have no live store to compare with)")
	}
	if t.Restored == nil {
		return noRestore(ev)
	}
	rr, err := restoredRevision(ctx, t)
	if err != nil {
		return errorOutcome(ev, "read the restored etcd: %v", err)
	}
	results := map[string]*prefixDiff{}
	ev["results"] = results
	var failed, errored, passed []string
	for _, p := range c.prefixes {
		d, err := comparePrefix(ctx, t.Restored, rr.Rev, t.Live, t.Snapshot.Revision, p)
		results[p] = d
		switch {
		case err != nil:
			d.Error = err.Error()
			errored = append(errored, fmt.Sprintf("%s: %v", p, err))
		case d.Mode == modeAtRevision && d.differing() > 0:
			failed = append(failed, fmt.Sprintf("%s differs from the live etcd at the snapshot's revision %d: %d only restored, %d only live, %d changed of %d (first: %s)",
				p, t.Snapshot.Revision, d.OnlyRestored, d.OnlyLive, d.Changed, d.Total, strings.Join(d.FirstDifferences, ", ")))
		case d.Mode == modeCurrent && d.Drift > c.maxDrift:
			failed = append(failed, fmt.Sprintf("%s drifted %.1f%% from current live data, more than maxDrift %.1f%%: %d only restored, %d only live, %d changed of %d (first: %s)",
				p, 100*d.Drift, 100*c.maxDrift, d.OnlyRestored, d.OnlyLive, d.Changed, d.Total, strings.Join(d.FirstDifferences, ", ")))
		case d.Mode == modeAtRevision:
			passed = append(passed, fmt.Sprintf("%s identical at revision %d (%d keys)", p, t.Snapshot.Revision, d.Total))
		default:
			passed = append(passed, fmt.Sprintf("%s drift %.1f%% within %.1f%% (%d only restored, %d only live, %d changed of %d; revision %d is compacted in the live etcd, so current data was compared)",
				p, 100*d.Drift, 100*c.maxDrift, d.OnlyRestored, d.OnlyLive, d.Changed, d.Total, t.Snapshot.Revision))
		}
	}
	switch {
	case len(failed) > 0:
		return failedOutcome(ev, "%s", strings.Join(append(failed, errored...), "; "))
	case len(errored) > 0:
		return errorOutcome(ev, "compare with the live etcd: %s", strings.Join(errored, "; "))
	}
	return passedOutcome(ev, "%s", strings.Join(passed, "; "))
}

// comparePrefix compares at the snapshot's revision when the live store still has it (also when
// compaction overtakes the comparison halfway), else with current live data.
func comparePrefix(ctx context.Context, restored *clientv3.Client, restoredRev int64, live *clientv3.Client, snapshotRev int64, prefix string) (*prefixDiff, error) {
	if snapshotRev > 0 {
		d, err := mergePrefix(ctx, restored, restoredRev, live, snapshotRev, prefix)
		switch {
		case isFutureRev(err):
			return d, fmt.Errorf("the live etcd has not reached the snapshot's revision %d: is it the cluster the snapshot was taken from?", snapshotRev)
		case !isCompacted(err):
			return d, err
		}
	}
	return mergePrefix(ctx, restored, restoredRev, live, 0, prefix)
}

// mergePrefix merges the two stores' keys under prefix in key order, keeping only counts, the
// first differing keys and a digest over every key and value digest of each side. liveRev 0 reads
// current live data.
func mergePrefix(ctx context.Context, restored *clientv3.Client, restoredRev int64, live *clientv3.Client, liveRev int64, prefix string) (*prefixDiff, error) {
	d := &prefixDiff{Mode: modeCurrent, RestoredRevision: restoredRev}
	if liveRev > 0 {
		d.Mode = modeAtRevision
	}
	liveScan := newRangeScan(live, prefix, liveRev, false)
	restoredIt := &rangeIter{scan: newRestoredScan(restored, prefix, restoredRev)}
	liveIt := &rangeIter{scan: liveScan}
	hr, hl := sha256.New(), sha256.New()

	l, err := liveIt.Next(ctx)
	if err != nil {
		return d, fmt.Errorf("read the live etcd: %w", err)
	}
	r, err := restoredIt.Next(ctx)
	if err != nil {
		return d, fmt.Errorf("read the restored etcd: %v", err) // %v: a compacted restored store is no reason to compare differently
	}
	note := func(key []byte, what string) {
		if len(d.FirstDifferences) < maxListed {
			d.FirstDifferences = append(d.FirstDifferences, fmt.Sprintf("%s (%s)", key, what))
		}
	}
	for r != nil || l != nil {
		cmp := 0
		switch {
		case r == nil:
			cmp = 1
		case l == nil:
			cmp = -1
		default:
			cmp = bytes.Compare(r.Key, l.Key)
		}
		var rd, ld [sha256.Size]byte
		if cmp <= 0 {
			rd = sha256.Sum256(r.Value)
			digestKey(hr, r.Key, rd)
			d.RestoredKeys++
		}
		if cmp >= 0 {
			ld = sha256.Sum256(l.Value)
			digestKey(hl, l.Key, ld)
			d.LiveKeys++
		}
		d.Total++
		switch {
		case cmp < 0:
			d.OnlyRestored++
			note(r.Key, "only restored")
		case cmp > 0:
			d.OnlyLive++
			note(l.Key, "only live")
		case rd != ld:
			d.Changed++
			note(r.Key, "value differs")
		}
		if cmp <= 0 {
			if r, err = restoredIt.Next(ctx); err != nil {
				return d, fmt.Errorf("read the restored etcd: %v", err)
			}
		}
		if cmp >= 0 {
			if l, err = liveIt.Next(ctx); err != nil {
				return d, fmt.Errorf("read the live etcd: %w", err)
			}
		}
	}
	d.LiveRevision = liveScan.Revision()
	d.RestoredDigest, d.LiveDigest = hex.EncodeToString(hr.Sum(nil)), hex.EncodeToString(hl.Sum(nil))
	if d.Total > 0 {
		d.Drift = float64(d.differing()) / float64(d.Total)
	}
	return d, nil
}

// digestKey adds one key and its value's digest to a side's digest: equal digests mean equal
// keys and values, so the record can show two stores matched without holding either.
func digestKey(h hash.Hash, key []byte, value [sha256.Size]byte) {
	h.Write(key)
	h.Write([]byte{0})
	h.Write(value[:])
}
