package verify

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/firedrill-dev/firedrill/scenarios"
)

// The canary of a Velero drill: a ConfigMap of this name whose data holds the nonce under this key,
// written into each included namespace just before the backup.
const (
	VeleroCanaryConfigMap = scenarios.CanaryConfigMap
	VeleroCanaryKey       = "nonce"
)

// VeleroCanaryCheck looks, in the restored copy of each backed-up namespace, for the canary
// ConfigMap the drill wrote just before the backup: back with its nonce, the backup holds the
// newest writes. (The etcd canary is CanaryCheck.)
type VeleroCanaryCheck struct {
	checkName
}

var _ VeleroCheck = (*VeleroCanaryCheck)(nil)

// NewVeleroCanaryCheck builds the canary check of a Velero drill; key is an etcd setting and
// refused.
func NewVeleroCanaryCheck(name string, spec scenarios.CanaryCheck) (*VeleroCanaryCheck, error) {
	if spec.Key != "" {
		return nil, errors.New("canary.key is the etcd key of etcd drills; a Velero drill's canary is the ConfigMap " + VeleroCanaryConfigMap)
	}
	return &VeleroCanaryCheck{checkName: newCheckName(name, scenarios.CheckCanary)}, nil
}

// canaryResult is the evidence of one namespace. Nonces are not recorded.
type canaryResult struct {
	RestoredInto string `json:"restoredInto"`
	Found        bool   `json:"found"`
	NonceMatches bool   `json:"nonceMatches"`
}

// Run reads the canary ConfigMap of every namespace the drill wrote one into.
func (c *VeleroCanaryCheck) Run(ctx context.Context, t *VeleroTarget) Outcome {
	ev := map[string]any{}
	if len(t.Canaries) == 0 {
		return errorOutcome(ev, "no canary was written: canary needs backup.velero.create, which writes it into each included namespace just before the backup")
	}
	if t.Cluster == nil {
		return noTarget(ev)
	}
	kube := t.Cluster.Kube
	per := map[string]canaryResult{}
	ev["namespaces"] = per
	var missing, differ []string
	for _, ns := range slices.Sorted(maps.Keys(t.Canaries)) {
		to := mapNamespace(t, ns)
		r := canaryResult{RestoredInto: to}
		cm, err := kube.CoreV1().ConfigMaps(to).Get(ctx, VeleroCanaryConfigMap, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			missing = append(missing, fmt.Sprintf("%s (restored into %s)", ns, to))
		case err != nil:
			return unreachable(ev, t, err)
		default:
			r.Found = true
			r.NonceMatches = cm.Data[VeleroCanaryKey] == t.Canaries[ns]
			if !r.NonceMatches {
				differ = append(differ, fmt.Sprintf("%s (restored into %s)", ns, to))
			}
		}
		per[ns] = r
	}
	var problems []string
	if len(missing) > 0 {
		problems = append(problems, fmt.Sprintf("the canary ConfigMap %s, written just before the backup, is not in the restored copy of %s: the backup misses the newest writes",
			VeleroCanaryConfigMap, strings.Join(missing, ", ")))
	}
	if len(differ) > 0 {
		problems = append(problems, fmt.Sprintf("the canary ConfigMap %s of %s holds another nonce than this drill wrote: the backup holds an older write of it (an older backup?)",
			VeleroCanaryConfigMap, strings.Join(differ, ", ")))
	}
	if len(problems) > 0 {
		return failedOutcome(ev, "%s", strings.Join(problems, "; "))
	}
	return passedOutcome(ev, "the canary written just before the backup came back with its nonce in %d namespace(s): %s", len(per), strings.Join(slices.Sorted(maps.Keys(t.Canaries)), ", "))
}
