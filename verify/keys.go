package verify

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/firedrill-dev/firedrill/scenarios"
)

// KeysCheck counts the keys under a prefix in the restored etcd and compares the count with the
// bounds. Without any bound it requires at least one key: a check that cannot fail proves nothing.
type KeysCheck struct {
	checkName
	prefix           string
	min, max, equals *int
}

var _ EtcdCheck = (*KeysCheck)(nil)

// NewKeysCheck builds an etcdKeys check; the prefix is required.
func NewKeysCheck(name string, spec scenarios.EtcdKeysCheck) (*KeysCheck, error) {
	if spec.Prefix == "" {
		return nil, errors.New("etcdKeys needs a prefix, e.g. /registry/deployments/")
	}
	c := &KeysCheck{checkName: newCheckName(name, scenarios.CheckEtcdKeys), prefix: spec.Prefix, min: spec.Min, max: spec.Max, equals: spec.Equals}
	if c.min == nil && c.max == nil && c.equals == nil {
		one := 1
		c.min = &one
	}
	if c.min != nil && c.max != nil && *c.min > *c.max {
		return nil, fmt.Errorf("etcdKeys: min %d is greater than max %d", *c.min, *c.max)
	}
	return c, nil
}

// Run counts with a count-only request at the restored revision.
func (c *KeysCheck) Run(ctx context.Context, t *EtcdTarget) Outcome {
	ev := map[string]any{"prefix": c.prefix}
	for k, v := range map[string]*int{"min": c.min, "max": c.max, "equals": c.equals} {
		if v != nil {
			ev[k] = *v
		}
	}
	if t.Restored == nil {
		return noRestore(ev)
	}
	rr, err := restoredRevision(ctx, t)
	if err != nil {
		return errorOutcome(ev, "read the restored etcd: %v", err)
	}
	n, err := countKeys(ctx, t.Restored, c.prefix, rr.Rev)
	if err != nil {
		return errorOutcome(ev, "count keys under %s in the restored etcd: %v", c.prefix, err)
	}
	ev["count"], ev["revision"] = n, rr.Rev
	var want []string
	ok := true
	if c.equals != nil {
		want, ok = append(want, fmt.Sprintf("exactly %d", *c.equals)), ok && n == int64(*c.equals)
	}
	if c.min != nil {
		want, ok = append(want, fmt.Sprintf("at least %d", *c.min)), ok && n >= int64(*c.min)
	}
	if c.max != nil {
		want, ok = append(want, fmt.Sprintf("at most %d", *c.max)), ok && n <= int64(*c.max)
	}
	if !ok {
		return failedOutcome(ev, "%d keys under %s in the restored etcd, want %s", n, c.prefix, strings.Join(want, " and "))
	}
	return passedOutcome(ev, "%d keys under %s (%s)", n, c.prefix, strings.Join(want, " and "))
}
