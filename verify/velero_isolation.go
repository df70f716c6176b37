package verify

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/firedrill-dev/firedrill/internal/probe"
	"github.com/firedrill-dev/firedrill/internal/probepod"
	"github.com/firedrill-dev/firedrill/scenarios"
)

// IsolationCheck proves that the restored copy is cut off from production rather than assuming
// it: from a probe pod in the scratch namespace, the restored copy of a Service must answer and
// the live application's Service must not. A cluster whose network plugin does not enforce
// NetworkPolicy fails it.
type IsolationCheck struct {
	checkName
	spec scenarios.IsolationCheck
	// attempt is how long one connection to production may hang before it counts as blocked.
	attempt string
}

// NewIsolationCheck builds an isolation check; the timeout defaults to 1m.
func NewIsolationCheck(name string, spec scenarios.IsolationCheck) *IsolationCheck {
	spec.Timeout.Duration = orDuration(spec.Timeout.Duration, scenarios.DefaultIsolationTimeout)
	return &IsolationCheck{checkName: newCheckName(name, scenarios.CheckIsolation), spec: spec, attempt: "5s"}
}

// Run probes production and the copy from inside the copy.
func (c *IsolationCheck) Run(ctx context.Context, t *VeleroTarget) Outcome {
	ev := map[string]any{}
	if t.Cluster == nil {
		return noTarget(ev)
	}
	if t.Source == nil {
		return errorOutcome(ev, "the source cluster is not reachable: nothing to prove the copy cannot reach")
	}
	from, svc, err := c.service(ctx, t)
	if err != nil {
		return errorOutcome(ev, "cannot prove isolation: %v", err)
	}
	ev["service"] = from + "/" + svc
	live, liveSvc, err := serviceAddress(ctx, t.Source.Kube, from, svc, c.spec.Port)
	if err != nil {
		return errorOutcome(ev, "cannot prove isolation: the live application: %v", err)
	}
	port := c.spec.Port
	if port == 0 {
		port = liveSvc.Spec.Ports[0].Port
	}
	if err := readyEndpoints(ctx, t, from, svc); err != nil {
		return errorOutcome(ev, "cannot prove isolation: %v: a refused connection would prove nothing", err)
	}
	ns := mapNamespace(t, from)
	copyAddr, _, err := serviceAddress(ctx, t.Cluster.Kube, ns, svc, port)
	if err != nil {
		return errorOutcome(ev, "cannot prove isolation: the restored copy: %v", err)
	}
	ev["production"], ev["copy"], ev["from"] = live, copyAddr, ns
	var r probe.IsolationResult
	args := []string{"isolation", copyAddr, "--blocked", live, "--for", c.spec.Timeout.String(), "--timeout", c.attempt}
	if err := runProbe(ctx, t.Cluster.Kube, t, probepod.Pod{Namespace: ns, Probe: "isolation", Args: args, Timeout: c.spec.Timeout.Duration + probeGrace}, &r); err != nil {
		return errorOutcome(ev, "isolation probe: %v", err)
	}
	ev["copyAnswered"], ev["copyAttempts"] = r.Allowed.Connected, r.AllowedAttempts
	var answered []string
	var outcomes []string
	for _, b := range r.Blocked {
		if b.Connected {
			answered = append(answered, b.Remote)
			outcomes = append(outcomes, "answered by "+b.Remote)
			continue
		}
		how := "refused: " + b.Error
		if b.TimedOut {
			how = "no answer within " + c.attempt
		}
		outcomes = append(outcomes, how)
	}
	ev["productionAttempts"] = outcomes
	switch {
	case len(answered) > 0:
		return failedOutcome(ev, "not isolated: from scratch namespace %s, the live application's Service %s/%s (%s) answered (%s): the cluster's network plugin does not enforce NetworkPolicy, or a policy lets the copy out",
			ns, from, svc, live, strings.Join(slices.Compact(answered), ", "))
	case !r.Allowed.Connected:
		return errorOutcome(ev, "cannot prove isolation: the restored copy %s/%s (%s) did not answer within %s either (%s), so production's silence shows nothing",
			ns, svc, copyAddr, c.spec.Timeout, r.Allowed.Error)
	}
	return passedOutcome(ev, "isolated: from %s, the restored %s (%s) answered and the live %s/%s (%s) did not (%s)",
		ns, svc, copyAddr, from, svc, live, outcomes[len(outcomes)-1])
}

// service is the live application's Service to probe: the scenario's, or the first Service of the
// backup that has a port and a cluster IP.
func (c *IsolationCheck) service(ctx context.Context, t *VeleroTarget) (string, string, error) {
	if c.spec.Service != "" {
		from := c.spec.Namespace
		if from == "" {
			src := slices.Sorted(maps.Keys(namespaceEvidence(t)))
			if len(src) == 0 {
				return "", "", errors.New("no backed-up namespace")
			}
			from = src[0]
		}
		return from, c.spec.Service, nil
	}
	for _, it := range t.Items {
		if groupResource(it.Resource).String() != "services" || it.Object == nil || (c.spec.Namespace != "" && it.Namespace != c.spec.Namespace) {
			continue
		}
		ports, _ := nestedField(it.Object.Object, "spec", "ports").([]any)
		ip, _ := nestedString(it.Object.Object, "spec", "clusterIP")
		if len(ports) > 0 && ip != "None" {
			return it.Namespace, it.Name, nil
		}
	}
	return "", "", errors.New("the backup holds no Service with a port to try: name one with isolation.service")
}

// readyEndpoints says whether the live Service has an endpoint that would answer.
func readyEndpoints(ctx context.Context, t *VeleroTarget, ns, svc string) error {
	l, err := t.Source.Kube.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err != nil {
		return fmt.Errorf("read the endpoints of %s/%s: %w", ns, svc, err)
	}
	for _, s := range l.Items {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready == nil || *e.Conditions.Ready {
				return nil
			}
		}
	}
	return fmt.Errorf("the live Service %s/%s has no ready endpoint", ns, svc)
}
