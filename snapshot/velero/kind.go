package velero

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"

	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	corev1 "k8s.io/api/core/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	kindv1 "sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	kindcluster "sigs.k8s.io/kind/pkg/cluster"

	"github.com/firedrill-dev/firedrill/scenarios"
)

// KindOptions say how to make the ephemeral cluster of a kind target.
type KindOptions struct {
	Target scenarios.KindTarget
	RunID  string
	// Dir receives the cluster's kubeconfig; required.
	Dir string
	// Probe finds the container engine; zero means SystemEngineProbe().
	Probe EngineProbe
	// WaitForReady bounds kind's wait for the control plane; 0 means 5 minutes.
	WaitForReady time.Duration
	// Expires is when the janitor may delete the cluster (the run's expiry); zero: only once its
	// run's runner is gone, or the janitor's grace has passed.
	Expires time.Time
}

// KindCluster is an ephemeral kind cluster made for one run.
type KindCluster struct {
	Name       string
	Kubeconfig string
	Engine     string
	provider   *kindcluster.Provider
	rest       *rest.Config
}

var kindNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// KindClusterName is the target's cluster name, "firedrill-<run id>" by default. kind names its
// node containers "<name>-control-plane", and their host names must stay DNS labels, so names are
// at most 49 characters.
func KindClusterName(t scenarios.KindTarget, runID string) (string, error) {
	name := t.Name
	if name == "" {
		name = shorten("firedrill-"+runID, 49)
	}
	if len(name) > 49 || !kindNameRE.MatchString(name) {
		return "", fmt.Errorf("%w: kind cluster name %q: use at most 49 lowercase letters, digits and dashes", ErrUsage, name)
	}
	return name, nil
}

// CreateKindCluster checks for a container engine, then creates the cluster and waits until its
// control plane is ready. kind cannot be interrupted: ctx bounds the engine check only. The caller
// deletes the cluster with Delete, also after a failure here (Delete of a half-made one works).
func CreateKindCluster(ctx context.Context, opts KindOptions) (*KindCluster, error) {
	name, err := KindClusterName(opts.Target, opts.RunID)
	if err != nil {
		return nil, err
	}
	if opts.Dir == "" {
		return nil, fmt.Errorf("%w: kind: no directory for the kubeconfig", ErrUsage)
	}
	probe := opts.Probe
	if probe.LookPath == nil || probe.Run == nil {
		probe = SystemEngineProbe()
	}
	engine, err := FindContainerEngine(ctx, probe)
	if err != nil {
		return nil, fmt.Errorf("kind target: %w", err)
	}
	var popt kindcluster.ProviderOption
	if engine == "podman" {
		popt = kindcluster.ProviderWithPodman()
	} else {
		popt = kindcluster.ProviderWithDocker()
	}
	k := &KindCluster{Name: name, Engine: engine, provider: kindcluster.NewProvider(popt),
		Kubeconfig: filepath.Join(opts.Dir, "kind-"+name+".kubeconfig")}
	wait := opts.WaitForReady
	if wait == 0 {
		wait = 5 * time.Minute
	}
	create := []kindcluster.CreateOption{
		kindcluster.CreateWithKubeconfigPath(k.Kubeconfig),
		kindcluster.CreateWithWaitForReady(wait),
		kindcluster.CreateWithDisplayUsage(false),
		kindcluster.CreateWithDisplaySalutation(false),
	}
	if opts.Target.Image != "" {
		create = append(create, kindcluster.CreateWithNodeImage(opts.Target.Image))
	}
	// The run label goes on the node as kind creates it, so that even a cluster whose creation
	// was cut short names its run; the kubelet refuses app.kubernetes.io labels, which
	// markKindNodes adds once the cluster answers.
	create = append(create, kindcluster.CreateWithV1Alpha4Config(&kindv1.Cluster{
		Nodes: []kindv1.Node{{Role: kindv1.ControlPlaneRole, Labels: map[string]string{LabelRun: opts.RunID}}},
	}))
	if err := k.provider.Create(name, create...); err != nil {
		return k, fmt.Errorf("create kind cluster %s with %s: %w", name, engine, err)
	}
	kc, err := k.provider.KubeConfig(name, false)
	if err != nil {
		return k, fmt.Errorf("kubeconfig of kind cluster %s: %w", name, err)
	}
	if k.rest, err = clientcmd.RESTConfigFromKubeConfig([]byte(kc)); err != nil {
		return k, fmt.Errorf("kubeconfig of kind cluster %s: %w", name, err)
	}
	if err := markKindNodes(ctx, k.rest, opts.RunID, opts.Expires); err != nil {
		return k, fmt.Errorf("label kind cluster %s as firedrill's: %w", name, err)
	}
	return k, nil
}

// markKindNodes labels every node of a kind cluster as firedrill's for runID, and annotates its
// expiry: how the janitor recognises the cluster (KindClusters).
func markKindNodes(ctx context.Context, cfg *rest.Config, runID string, expires time.Time) error {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, n := range nodes.Items {
		patch := map[string]any{"metadata": map[string]any{"labels": map[string]string{LabelManagedBy: ManagedBy, LabelRun: runID}}}
		if !expires.IsZero() {
			patch["metadata"].(map[string]any)["annotations"] = map[string]string{AnnotationExpires: expires.UTC().Format(time.RFC3339)}
		}
		b, _ := json.Marshal(patch)
		if _, err := cs.CoreV1().Nodes().Patch(ctx, n.Name, types.MergePatchType, b, metav1.PatchOptions{}); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	return nil
}

// Extend sets the cluster's expiry to until: a run whose cleanup policy keeps the cluster sets
// now+keepFor, after which the janitor deletes it.
func (k *KindCluster) Extend(ctx context.Context, runID string, until time.Time) error {
	if err := markKindNodes(ctx, k.RESTConfig(), runID, until); err != nil {
		return fmt.Errorf("keep kind cluster %s until %s: %w", k.Name, until.Format(time.RFC3339), err)
	}
	return nil
}

// KindClusters lists, reads and deletes the kind clusters of one container engine: what the
// janitor needs to find the clusters firedrill made by their nodes' labels.
type KindClusters struct {
	provider *kindcluster.Provider
}

// NewKindClusters returns KindClusters for engine ("docker" or "podman", FindContainerEngine).
func NewKindClusters(engine string) *KindClusters {
	popt := kindcluster.ProviderWithDocker()
	if engine == "podman" {
		popt = kindcluster.ProviderWithPodman()
	}
	return &KindClusters{provider: kindcluster.NewProvider(popt)}
}

// List names every kind cluster of the engine, firedrill's or not.
func (k *KindClusters) List() ([]string, error) { return k.provider.List() }

// Nodes reads the nodes of the named cluster through its API server.
func (k *KindClusters) Nodes(ctx context.Context, name string) ([]corev1.Node, error) {
	kc, err := k.provider.KubeConfig(name, false)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig of kind cluster %s: %w", name, err)
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig([]byte(kc))
	if err != nil {
		return nil, fmt.Errorf("kubeconfig of kind cluster %s: %w", name, err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	l, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("nodes of kind cluster %s: %w", name, err)
	}
	return l.Items, nil
}

// Delete deletes the named cluster's containers (its kubeconfig file, in the run's work
// directory, goes with that directory).
func (k *KindClusters) Delete(name string) error {
	if err := k.provider.Delete(name, ""); err != nil {
		return fmt.Errorf("delete kind cluster %s: %w", name, err)
	}
	return nil
}

// RESTConfig reaches the kind cluster.
func (k *KindCluster) RESTConfig() *rest.Config { return rest.CopyConfig(k.rest) }

// Delete removes the cluster's containers and its kubeconfig file.
func (k *KindCluster) Delete() error {
	if err := k.provider.Delete(k.Name, k.Kubeconfig); err != nil {
		return fmt.Errorf("delete kind cluster %s: %w", k.Name, err)
	}
	_ = os.Remove(k.Kubeconfig)
	return nil
}

// InstallVelero installs Velero from v into the kind cluster (VeleroManifests, credentials read
// from v.CredentialsFile), waits until its BackupStorageLocation is Available, and returns a
// Client for it labelled for runID.
func (k *KindCluster) InstallVelero(ctx context.Context, v scenarios.KindVelero, runID string) (*Client, error) {
	if err := InstallVelero(ctx, k.RESTConfig(), v, DefaultNamespace, runID); err != nil {
		return nil, err
	}
	c, err := New(k.RESTConfig(), DefaultNamespace)
	if err != nil {
		return nil, err
	}
	c = c.ForRun(runID)
	for {
		_, err := c.CheckLocation(ctx, "")
		if err == nil {
			return c, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("velero in kind cluster %s: %w (last: %v)", k.Name, ctx.Err(), err)
		case <-time.After(2 * time.Second):
		}
	}
}

// InstallVelero applies VeleroManifests to the cluster cfg reaches: CRDs first, waiting until
// they are established, then the rest. Objects that exist already are left as they are.
func InstallVelero(ctx context.Context, cfg *rest.Config, v scenarios.KindVelero, namespace, runID string) error {
	var creds []byte
	if v.CredentialsFile != "" {
		b, err := os.ReadFile(v.CredentialsFile)
		if err != nil {
			return fmt.Errorf("install velero: credentials: %w", err)
		}
		creds = b
	}
	objs, err := VeleroManifests(v, namespace, creds, runID)
	if err != nil {
		return err
	}
	sc := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, velerov1.AddToScheme, apiextv1.AddToScheme} {
		if err := add(sc); err != nil {
			return err
		}
	}
	kc, err := client.New(cfg, client.Options{Scheme: sc})
	if err != nil {
		return fmt.Errorf("install velero: %w", err)
	}
	for _, o := range objs {
		if err := kc.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("install velero: create %T %s: %w", o, o.GetName(), err)
		}
		if crd, ok := o.(*apiextv1.CustomResourceDefinition); ok {
			if err := waitEstablished(ctx, kc, crd.Name); err != nil {
				return fmt.Errorf("install velero: %w", err)
			}
		}
	}
	return nil
}

func waitEstablished(ctx context.Context, kc client.Client, name string) error {
	for {
		var crd apiextv1.CustomResourceDefinition
		if err := kc.Get(ctx, client.ObjectKey{Name: name}, &crd); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		for _, c := range crd.Status.Conditions {
			if c.Type == apiextv1.Established && c.Status == apiextv1.ConditionTrue {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return errors.Join(fmt.Errorf("CRD %s not established", name), ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
