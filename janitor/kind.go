package janitor

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/firedrill-dev/firedrill/scratch"
)

// KindClusters are the kind clusters of this machine's container engine
// (velero.KindClusters).
type KindClusters interface {
	// List names every cluster, firedrill's or not.
	List() ([]string, error)
	// Nodes reads a cluster's nodes through its API server.
	Nodes(ctx context.Context, name string) ([]corev1.Node, error)
	Delete(name string) error
}

// kindDue says whether a kind cluster with these nodes is firedrill's and due, for which run and
// why ("" when not). Every node must carry firedrill.dev/run with one run: kind puts it on each
// node as it creates the cluster (velero.CreateKindCluster). Firedrill adds
// app.kubernetes.io/managed-by and the expiry once the cluster answers (the kubelet refuses that
// label), so a cluster whose creation was cut short has only the run label: it is due only when
// its run's runner is known to be gone.
func kindDue(nodes []corev1.Node, j scratch.Judge) (run, why string, expires time.Time) {
	if len(nodes) == 0 {
		return "", "", time.Time{}
	}
	managed := true
	var created time.Time
	for i, n := range nodes {
		r := n.Labels[scratch.LabelRun]
		if r == "" || (i > 0 && r != run) {
			return "", "", time.Time{} // not firedrill's, or not one run's
		}
		run = r
		managed = managed && n.Labels[scratch.LabelManagedBy] == scratch.ManagedBy
		if c := n.CreationTimestamp.Time; created.IsZero() || c.Before(created) {
			created = c
		}
		// The latest expiry any node carries: Extend annotates them all.
		if e := scratch.ExpiryOf(n.Annotations); e.After(expires) {
			expires = e
		}
	}
	if !managed {
		if j.RunnerGone != nil && j.RunnerGone(run) {
			return run, scratch.DueRunnerGone, time.Time{}
		}
		return run, "", time.Time{}
	}
	return run, j.Due(run, created, expires), expires
}

// sweepKind deletes the due kind clusters firedrill made.
func (j *Janitor) sweepKind(ctx context.Context, p *pass) {
	names, err := j.cfg.Kind.List()
	if err != nil {
		p.errs = append(p.errs, fmt.Errorf("list kind clusters: %w", err))
		return
	}
	for _, name := range names {
		nodes, err := j.cfg.Kind.Nodes(ctx, name)
		if err != nil {
			// A cluster that does not answer cannot show whose it is: it stays.
			p.errs = append(p.errs, fmt.Errorf("kind cluster %s: %w; it stays until it answers", name, err))
			continue
		}
		run, why, expires := kindDue(nodes, p.judge)
		if why == "" {
			continue
		}
		it := Item{Kind: KindKindCluster, Name: name, Run: run, Reason: why}
		switch why {
		case scratch.DueExpired:
			e := expires.UTC()
			it.ExpiredAt = &e
		case scratch.DueRunnerGone:
			it.Runner = p.gone[run]
		}
		if !p.opts.DryRun {
			// Judged again just before: another run of the same cluster name may have replaced it.
			nodes, err := j.cfg.Kind.Nodes(ctx, name)
			if err != nil {
				p.fail(it, fmt.Errorf("kind cluster %s: %w", name, err))
				continue
			}
			if r, w, _ := kindDue(nodes, p.judge); r != run || w == "" {
				continue
			}
			if err := j.cfg.Kind.Delete(name); err != nil {
				p.fail(it, err)
				continue
			}
		}
		p.removed(it)
	}
}
