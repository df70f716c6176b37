// Package clusters reads what coverage discovers from real clusters: Velero Schedules and
// Backups, and Namespaces, through the Kubernetes API with kubectl's kubeconfig rules.
package clusters

import (
	"cmp"
	"context"
	"fmt"

	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/firedrill-dev/firedrill/coverage"
)

// Labels firedrill puts on what it makes (snapshot/velero and scratch use the same values).
const (
	labelManagedBy = "app.kubernetes.io/managed-by"
	managedBy      = "firedrill"
	labelRun       = "firedrill.dev/run"
)

// Connect resolves a Source kubectl's way (explicit kubeconfig and context, else KUBECONFIG and
// ~/.kube/config, else in-cluster) without contacting the cluster. It is a coverage.Connector.
func Connect(src coverage.Source) (coverage.Cluster, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if src.Kubeconfig != "" {
		rules.ExplicitPath = src.Kubeconfig
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: src.Context})
	cfg, err := cc.ClientConfig()
	if err != nil {
		return coverage.Cluster{}, fmt.Errorf("load kubeconfig: %w (set --kubeconfig or KUBECONFIG)", err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	name := src.Context
	if name == "" {
		if raw, err := cc.RawConfig(); err == nil {
			name = raw.CurrentContext
		}
	}
	sc := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(sc); err != nil {
		return coverage.Cluster{}, err
	}
	if err := velerov1.AddToScheme(sc); err != nil {
		return coverage.Cluster{}, err
	}
	kc, err := client.New(cfg, client.Options{Scheme: sc})
	if err != nil {
		return coverage.Cluster{}, fmt.Errorf("client for %s: %w", cfg.Host, err)
	}
	return coverage.Cluster{Name: cmp.Or(name, "in-cluster"), ID: cfg.Host, Velero: &Kube{c: kc}}, nil
}

// Kube reads one cluster.
type Kube struct{ c client.Client }

var _ coverage.Velero = (*Kube)(nil)

// NewKube returns a Kube that reads through c, whose scheme knows Velero's and core types.
func NewKube(c client.Client) *Kube { return &Kube{c: c} }

// Schedules implements coverage.Velero.
func (k *Kube) Schedules(ctx context.Context, namespace string) ([]coverage.Schedule, error) {
	var l velerov1.ScheduleList
	if err := k.c.List(ctx, &l, client.InNamespace(namespace)); err != nil {
		return nil, listErr("schedules", err)
	}
	out := make([]coverage.Schedule, 0, len(l.Items))
	for _, s := range l.Items {
		out = append(out, coverage.Schedule{
			Name:               s.Name,
			IncludedNamespaces: s.Spec.Template.IncludedNamespaces,
			ExcludedNamespaces: s.Spec.Template.ExcludedNamespaces,
			Cron:               s.Spec.Schedule,
			Paused:             s.Spec.Paused,
			Annotations:        s.Annotations,
		})
	}
	return out, nil
}

// Backups implements coverage.Velero.
func (k *Kube) Backups(ctx context.Context, namespace string) ([]coverage.Backup, error) {
	var l velerov1.BackupList
	if err := k.c.List(ctx, &l, client.InNamespace(namespace)); err != nil {
		return nil, listErr("backups", err)
	}
	out := make([]coverage.Backup, 0, len(l.Items))
	for _, b := range l.Items {
		started := b.CreationTimestamp.Time
		if b.Status.StartTimestamp != nil {
			started = b.Status.StartTimestamp.Time
		}
		out = append(out, coverage.Backup{
			Name:               b.Name,
			Schedule:           b.Labels[velerov1.ScheduleNameLabel],
			Phase:              string(b.Status.Phase),
			Started:            started,
			IncludedNamespaces: b.Spec.IncludedNamespaces,
			ByFiredrill:        b.Labels[labelManagedBy] == managedBy,
			Annotations:        b.Annotations,
		})
	}
	return out, nil
}

// Namespaces implements coverage.Velero.
func (k *Kube) Namespaces(ctx context.Context) ([]coverage.Namespace, error) {
	var l corev1.NamespaceList
	if err := k.c.List(ctx, &l); err != nil {
		return nil, err
	}
	out := make([]coverage.Namespace, 0, len(l.Items))
	for _, ns := range l.Items {
		_, run := ns.Labels[labelRun]
		out = append(out, coverage.Namespace{Name: ns.Name, Scratch: run && ns.Labels[labelManagedBy] == managedBy, Annotations: ns.Annotations})
	}
	return out, nil
}

func listErr(what string, err error) error {
	if meta.IsNoMatchError(err) {
		return coverage.ErrNoVelero
	}
	return fmt.Errorf("list Velero %s: %w", what, err)
}
