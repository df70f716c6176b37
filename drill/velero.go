package drill

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/firedrill-dev/firedrill/scenarios"
	"github.com/firedrill-dev/firedrill/scratch"
	"github.com/firedrill-dev/firedrill/snapshot/velero"
	"github.com/firedrill-dev/firedrill/verify"
)

// VeleroOptions are the operator's choices for Velero drills that are not part of the scenario.
type VeleroOptions struct {
	// Kubeconfig and Context override spec.source (firedrill --kubeconfig/--context).
	Kubeconfig, Context string
	// DefaultRequest is given to containers without requests in scratch namespaces (a LimitRange),
	// so that the quota's cpu/memory limits do not refuse restored pods. Zero: 10m CPU, 16Mi.
	DefaultRequest corev1.ResourceList
}

// VeleroDriver drills a Velero backup: it finds or makes the backup, creates isolated scratch
// namespaces (in the source cluster, a second cluster, or a kind cluster), restores into them with
// Velero, runs the checks and deletes only what it created.
type VeleroDriver struct {
	sc     *scenarios.Scenario
	opts   VeleroOptions
	spec   *scenarios.VeleroBackup
	checks []verify.VeleroCheck

	// State of the run.
	runID        string
	source       *rest.Config
	src          *velero.Client // Velero of the source cluster
	backup       *velero.BackupInfo
	createdBy    bool // this run created the backup
	items        []verify.BackupItem
	canaries     map[string]string // backed-up namespace → nonce
	canaryWrites []string          // namespaces where the canary ConfigMap was written
	canaryAt     time.Time
	target       *rest.Config
	dst          *velero.Client // Velero restoring (the source's, the second cluster's or kind's)
	kind         *velero.KindCluster
	mapping      map[string]string
	prepared     []string // scratch namespaces this run created
	restore      *velero.RestoreInfo
	isolation    scenarios.Isolation
}

var _ Driver = (*VeleroDriver)(nil)

// NewVeleroDriver builds the driver for a loaded scenario whose backup is a Velero backup.
func NewVeleroDriver(sc *scenarios.Scenario, opts VeleroOptions) (*VeleroDriver, error) {
	r := sc.Spec.Restore
	if sc.Spec.Backup.Velero == nil || (r.ScratchNamespace == nil && r.Cluster == nil && r.Kind == nil) {
		return nil, fmt.Errorf("scenario %s: a Velero drill needs spec.backup.velero and a scratchNamespace, cluster or kind restore", sc.Metadata.Name)
	}
	checks, err := verify.NewVeleroChecks(sc.Metadata.Name, sc.Spec.Checks)
	if err != nil {
		return nil, fmt.Errorf("scenario %s: %w", sc.Metadata.Name, err)
	}
	d := &VeleroDriver{sc: sc, opts: opts, spec: sc.Spec.Backup.Velero, checks: checks}
	switch {
	case r.ScratchNamespace != nil:
		d.isolation = r.ScratchNamespace.Isolation
	case r.Cluster != nil:
		d.isolation = r.Cluster.Isolation
	default:
		d.isolation = r.Kind.Isolation
	}
	return d, nil
}

// restConfig loads a kubeconfig the way kubectl does: explicit path and context, else KUBECONFIG
// and ~/.kube/config, else in-cluster.
func restConfig(kubeconfig, kubeContext string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if kubeconfig != "" {
		rules.ExplicitPath = kubeconfig
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: kubeContext}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	return cfg, nil
}

func (d *VeleroDriver) sourceConfig() (*rest.Config, error) {
	kc, ctx := d.opts.Kubeconfig, d.opts.Context
	if s := d.sc.Spec.Source; s != nil && kc == "" && ctx == "" {
		kc, ctx = s.Kubeconfig, s.Context
	}
	return restConfig(kc, ctx)
}

// Preflight finds the backup and checks its storage location and the restore target, reading
// only. A mapping onto an existing namespace is refused here, before anything is written.
func (d *VeleroDriver) Preflight(ctx context.Context, rc *RunContext) error {
	d.runID = rc.ID
	cfg, err := d.sourceConfig()
	if err != nil {
		return err
	}
	d.source = cfg
	if d.src, err = velero.New(cfg, d.spec.Namespace); err != nil {
		return err
	}
	d.src = d.src.ForRun(rc.ID)
	if err := d.src.Ping(ctx); err != nil {
		return err
	}
	switch {
	case d.spec.LatestFrom != nil:
		d.backup, err = d.src.LatestFromSchedule(ctx, d.spec.LatestFrom.Schedule)
	case d.spec.Name != "":
		d.backup, err = d.src.GetBackup(ctx, d.spec.Name)
	}
	if err != nil {
		return err
	}
	location := ""
	if d.backup != nil {
		location = d.backup.StorageLocation
		for _, s := range d.backup.Skipped {
			rc.Progress.Note("passed over: " + s)
		}
		rc.Progress.Note(fmt.Sprintf("backup %s: %s, %d items, %s old", d.backup.Name, d.backup.Phase, d.backup.ItemsBackedUp, time.Since(d.backup.Started).Round(time.Second)))
	} else {
		location = d.spec.Create.StorageLocation
	}
	loc, err := d.src.CheckLocation(ctx, location)
	if err != nil {
		return err
	}
	rc.Progress.Note(fmt.Sprintf("backup storage location %s is %s", loc.Name, loc.Phase))

	if err := d.connectTarget(ctx, rc); err != nil {
		return err
	}
	if d.backup != nil || d.spec.Create != nil {
		if err := d.planMapping(ctx); err != nil {
			return err
		}
	}
	return nil
}

// connectTarget reaches the cluster the restore goes to: the source itself, a second cluster or
// (checked only, created in the restore step) a kind cluster.
func (d *VeleroDriver) connectTarget(ctx context.Context, rc *RunContext) error {
	r := d.sc.Spec.Restore
	switch {
	case r.ScratchNamespace != nil:
		d.target, d.dst = d.source, d.src
	case r.Cluster != nil:
		cfg, err := restConfig(r.Cluster.Kubeconfig, r.Cluster.Context)
		if err != nil {
			return fmt.Errorf("second cluster: %w", err)
		}
		d.target = cfg
		dst, err := velero.New(cfg, r.Cluster.VeleroNamespace)
		if err != nil {
			return fmt.Errorf("second cluster: %w", err)
		}
		d.dst = dst.ForRun(rc.ID)
		if err := d.dst.Ping(ctx); err != nil {
			return fmt.Errorf("second cluster: %w", err)
		}
	case r.Kind != nil:
		engine, err := velero.FindContainerEngine(ctx, velero.SystemEngineProbe())
		if err != nil {
			return err
		}
		rc.Progress.Note("container engine for kind: " + engine)
	}
	return nil
}

func (d *VeleroDriver) mappingTemplates() map[string]string {
	r := d.sc.Spec.Restore
	switch {
	case r.ScratchNamespace != nil:
		return r.ScratchNamespace.NamespaceMapping
	case r.Cluster != nil:
		return r.Cluster.NamespaceMapping
	}
	return r.Kind.NamespaceMapping
}

// planMapping renders the scratch name of every namespace to restore — those the mapping names,
// else every namespace of the backup — and refuses names that exist in the target.
func (d *VeleroDriver) planMapping(ctx context.Context) error {
	var sources []string
	tmpls := d.mappingTemplates()
	switch {
	case len(tmpls) > 0:
		sources = slices.Sorted(maps.Keys(tmpls))
	case d.spec.Create != nil:
		sources = slices.Clone(d.spec.Create.IncludedNamespaces)
	default:
		sources = d.backup.IncludedNamespaces
		if len(sources) == 0 || slices.Contains(sources, "*") {
			listed, err := d.src.BackupResourceList(ctx, d.backup.Name)
			if err != nil {
				return fmt.Errorf("which namespaces backup %s holds: %w", d.backup.Name, err)
			}
			sources = velero.Namespaces(listed)
		}
	}
	if len(sources) == 0 {
		return Refuse(fmt.Errorf("backup %s holds no namespaced objects: nothing to restore into scratch namespaces", d.backupName()))
	}
	d.mapping = map[string]string{}
	for _, ns := range sources {
		tmpl := tmpls[ns]
		if tmpl == "" {
			tmpl = scenarios.DefaultNamespaceTemplate
		}
		name, err := scenarios.RenderNamespace(tmpl, scenarios.NamespaceData{RunID: d.runID, Namespace: ns, Scenario: d.sc.Metadata.Name})
		if err != nil {
			return Refuse(fmt.Errorf("namespace mapping of %s: %w", ns, err))
		}
		d.mapping[ns] = shortenName(name)
	}
	if d.sc.Spec.Restore.Kind != nil {
		return nil // the kind cluster does not exist yet: every name is free
	}
	cs, err := kubernetes.NewForConfig(d.target)
	if err != nil {
		return err
	}
	var taken []string
	for _, ns := range slices.Sorted(maps.Values(d.mapping)) {
		_, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		switch {
		case err == nil:
			taken = append(taken, ns)
		case !apierrors.IsNotFound(err):
			return fmt.Errorf("check that namespace %s is free: %w", ns, err)
		}
	}
	if len(taken) > 0 {
		return Refuse(fmt.Errorf("namespace %s exists: a drill only restores into namespaces it creates; choose another namespaceMapping", strings.Join(taken, ", ")))
	}
	return nil
}

// shortenName keeps a rendered namespace name within 63 characters, cutting the middle so that
// both the run id and the namespace stay recognisable.
func shortenName(s string) string {
	if len(s) <= 63 {
		return s
	}
	return strings.TrimRight(s[:40], "-") + "-" + strings.TrimLeft(s[len(s)-22:], "-")
}

func (d *VeleroDriver) backupName() string {
	if d.backup != nil {
		return d.backup.Name
	}
	return "firedrill-" + d.runID
}

// Backup makes the backup (after writing the canaries) or uses the one found, then reads its
// contents for the checks.
func (d *VeleroDriver) Backup(ctx context.Context, rc *RunContext) (BackupRecord, error) {
	b := BackupRecord{Kind: "velero-backup"}
	if d.spec.Create != nil {
		if err := d.writeCanaries(ctx, rc); err != nil {
			return b, err
		}
		rc.Progress.Note("creating backup " + d.backupName() + " of " + strings.Join(d.spec.Create.IncludedNamespaces, ", "))
		if _, err := d.src.CreateBackup(ctx, d.backupName(), *d.spec.Create, map[string]string{"firedrill.dev/scenario": d.sc.Metadata.Name}); err != nil {
			return b, err
		}
		d.createdBy = true
		info, err := d.src.WaitBackup(ctx, d.backupName(), func(done, total int) { rc.Progress.Bytes(int64(done), int64(total)) })
		if err != nil {
			if errors.Is(err, velero.ErrBackupFailed) && !errors.Is(err, velero.ErrNotProcessing) {
				return b, Fail(err)
			}
			return b, err
		}
		d.backup = info
		if err := d.planMapping(ctx); err != nil {
			return b, err
		}
	}
	switch {
	case d.spec.Create != nil:
		b.Source = "velero-create"
	case d.spec.LatestFrom != nil:
		b.Source = "velero-schedule " + d.spec.LatestFrom.Schedule
		b.SelectedBy = "newest Completed backup of the schedule"
	default:
		b.Source = "velero-backup"
	}
	b.Name, b.Location, b.Items = d.backup.Name, d.backup.StorageLocation, d.backup.ItemsBackedUp
	created := d.backup.Started.UTC()
	if t := d.canaryTime(); !t.IsZero() {
		created = t
	}
	b.CreatedAt = &created

	rc.Progress.Note("reading the backup's contents through a Velero DownloadRequest")
	items, err := d.src.BackupContents(ctx, d.backup.Name)
	if err != nil {
		return b, fmt.Errorf("read backup %s contents: %w", d.backup.Name, err)
	}
	d.items = make([]verify.BackupItem, len(items))
	for i, it := range items {
		d.items[i] = verify.BackupItem{Resource: it.Resource, Namespace: it.Namespace, Name: it.Name, Object: it.Object}
	}
	rc.Progress.Note(fmt.Sprintf("backup %s holds %d items; restoring %s", d.backup.Name, len(items), describeMapping(d.mapping)))
	return b, nil
}

func (d *VeleroDriver) canaryTime() time.Time {
	if len(d.canaries) == 0 {
		return time.Time{}
	}
	return d.canaryAt
}

func (d *VeleroDriver) hasCanary() bool {
	for _, c := range d.sc.Spec.Checks {
		if c.Canary != nil {
			return true
		}
	}
	return false
}

// writeCanaries writes a ConfigMap holding a fresh nonce into each namespace the backup will
// include, so that the restored copy can prove it holds the newest writes.
func (d *VeleroDriver) writeCanaries(ctx context.Context, rc *RunContext) error {
	if !d.hasCanary() {
		return nil
	}
	cs, err := kubernetes.NewForConfig(d.source)
	if err != nil {
		return err
	}
	labels := map[string]string{scratch.LabelManagedBy: scratch.ManagedBy, scratch.LabelRun: d.runID}
	if sel := d.spec.Create.LabelSelector; sel != nil {
		// The backup selects by labels: the canary must carry them to be backed up.
		maps.Copy(labels, sel.MatchLabels)
	}
	d.canaries = map[string]string{}
	d.canaryAt = time.Now().UTC()
	for _, ns := range d.spec.Create.IncludedNamespaces {
		nonce := randomNonce()
		cm := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: scenarios.CanaryConfigMap, Namespace: ns, Labels: labels},
			Data:       map[string]string{"nonce": nonce, "run": d.runID, "writtenAt": d.canaryAt.Format(time.RFC3339)},
		}
		existing, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, cm.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			_, err = cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{})
		case err == nil && existing.Labels[scratch.LabelManagedBy] == scratch.ManagedBy:
			existing.Data, existing.Labels = cm.Data, labels
			_, err = cs.CoreV1().ConfigMaps(ns).Update(ctx, existing, metav1.UpdateOptions{})
		case err == nil:
			return Refuse(fmt.Errorf("namespace %s has a ConfigMap %s that is not firedrill's: firedrill will not overwrite it; remove the canary check or that ConfigMap", ns, cm.Name))
		}
		if err != nil {
			return fmt.Errorf("write canary ConfigMap %s/%s: %w", ns, cm.Name, err)
		}
		d.canaries[ns] = nonce
		d.canaryWrites = append(d.canaryWrites, ns)
	}
	rc.Progress.Note("canary ConfigMaps written to " + strings.Join(d.canaryWrites, ", "))
	return nil
}

func randomNonce() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Restore creates the target (a kind cluster when asked), the isolated scratch namespaces, and
// restores the backup into them with Velero.
func (d *VeleroDriver) Restore(ctx context.Context, rc *RunContext) error {
	r := d.sc.Spec.Restore
	ephemeral := false
	if r.Kind != nil {
		rc.Progress.Note("creating kind cluster")
		k, err := velero.CreateKindCluster(ctx, velero.KindOptions{Target: *r.Kind, RunID: d.runID, Dir: rc.WorkDir})
		if err != nil {
			return fmt.Errorf("create kind cluster: %w", err)
		}
		d.kind, d.target = k, k.RESTConfig()
		if d.dst, err = k.InstallVelero(ctx, r.Kind.Velero, d.runID); err != nil {
			return fmt.Errorf("install Velero into kind cluster %s: %w", k.Name, err)
		}
		ephemeral = true
	}
	if d.dst != d.src {
		rc.Progress.Note("waiting for the target's Velero to see backup " + d.backup.Name)
		if _, err := d.dst.WaitForBackup(ctx, d.backup.Name); err != nil {
			return err
		}
	}
	cs, err := kubernetes.NewForConfig(d.target)
	if err != nil {
		return err
	}
	mgr := scratch.New(cs)
	names := slices.Sorted(maps.Values(d.mapping))
	iso, err := d.scratchIsolation()
	if err != nil {
		return Refuse(err)
	}
	// The janitor may take them once the run and its cleanup could no longer be going on.
	expires := time.Now().Add(d.sc.Spec.Timeout.Duration + time.Hour)
	if err := mgr.Prepare(ctx, d.runID, d.sc.Metadata.Name, names, iso, expires); err != nil {
		if errors.Is(err, scratch.ErrExists) || errors.Is(err, scratch.ErrInvalidName) {
			return Refuse(err)
		}
		return fmt.Errorf("prepare scratch namespaces: %w", err)
	}
	d.prepared = names
	rc.Progress.Note("scratch namespaces ready and isolated: " + strings.Join(names, ", "))
	if err := mgr.Confirm(ctx, d.runID, names); err != nil {
		return err
	}
	info, err := d.dst.Restore(ctx, velero.RestoreOptions{
		Backup: d.backup.Name, NamespaceMapping: d.mapping, Isolation: d.isolation, EphemeralCluster: ephemeral,
		Labels: map[string]string{"firedrill.dev/scenario": d.sc.Metadata.Name},
	}, func(done, total int) { rc.Progress.Bytes(int64(done), int64(total)) })
	d.restore = info
	if err != nil {
		var nf *velero.NotFinishedError
		switch {
		case errors.Is(err, velero.ErrNotProcessing):
			return err
		case errors.As(err, &nf) && errors.Is(err, context.DeadlineExceeded):
			// Not restored within the drill's time: the backup is not good enough to meet it.
			return Fail(err)
		case errors.Is(err, velero.ErrRestoreFailed) && info != nil && info.Phase == "PartiallyFailed":
			return Fail(err)
		}
		return err
	}
	rc.Progress.Note(fmt.Sprintf("restore %s %s: %d of %d items, %d warnings", info.Name, info.Phase, info.ItemsRestored, info.TotalItems, info.Warnings))
	return nil
}

func (d *VeleroDriver) scratchIsolation() (scratch.Isolation, error) {
	iso, err := ScratchIsolation(d.isolation)
	if err == nil && d.opts.DefaultRequest != nil && iso.DefaultRequest != nil {
		iso.DefaultRequest = d.opts.DefaultRequest
	}
	return iso, err
}

// ScratchIsolation turns a scenario's isolation into what the scratch package applies; with a
// cpu or memory quota, containers without requests get 10m CPU and 16Mi (a LimitRange), or the
// quota would refuse every restored pod that sets none.
func ScratchIsolation(in scenarios.Isolation) (scratch.Isolation, error) {
	iso := scratch.Isolation{DenyNetwork: in.DenyNetwork == nil || *in.DenyNetwork, AllowDNS: in.AllowDNS, Quota: corev1.ResourceList{}}
	q := in.Quota
	if q == nil {
		q = &scenarios.Quota{CPU: scenarios.DefaultQuotaCPU, Memory: scenarios.DefaultQuotaMemory, Pods: scenarios.DefaultQuotaPods}
	}
	for name, v := range map[corev1.ResourceName]string{corev1.ResourceCPU: q.CPU, corev1.ResourceMemory: q.Memory, corev1.ResourcePods: q.Pods} {
		if v == "" {
			continue
		}
		qty, err := resource.ParseQuantity(v)
		if err != nil {
			return iso, fmt.Errorf("isolation.quota.%s: %w", name, err)
		}
		iso.Quota[name] = qty
	}
	_, cpu := iso.Quota[corev1.ResourceCPU]
	_, mem := iso.Quota[corev1.ResourceMemory]
	if cpu || mem {
		iso.DefaultRequest = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")}
	}
	return iso, nil
}

// Target says where the copy went.
func (d *VeleroDriver) Target() *TargetRecord {
	if len(d.mapping) == 0 {
		return nil
	}
	r := d.sc.Spec.Restore
	t := &TargetRecord{Kind: "scratchNamespace", Namespaces: maps.Clone(d.mapping)}
	switch {
	case r.Cluster != nil:
		t.Kind, t.Cluster = "cluster", r.Cluster.Kubeconfig
		if r.Cluster.Context != "" {
			t.Cluster += " (context " + r.Cluster.Context + ")"
		}
	case r.Kind != nil:
		t.Kind = "kind"
		if d.kind != nil {
			t.Cluster = d.kind.Name
		}
	}
	return t
}

// Verify runs every check against the restored copy.
func (d *VeleroDriver) Verify(ctx context.Context, rc *RunContext) []CheckRecord {
	t := &verify.VeleroTarget{
		Scenario: d.sc.Metadata.Name, RunID: d.runID, Config: d.target, NamespaceMapping: d.mapping,
		Items: d.items, Canaries: d.canaries, BackupName: d.backup.Name,
	}
	if d.restore != nil {
		t.RestoreName, t.ExcludedResources = d.restore.Name, d.restore.ExcludedResources
	}
	out := make([]CheckRecord, 0, len(d.checks))
	for _, c := range d.checks {
		rc.Progress.Note("check: " + c.Name())
		start := time.Now()
		o := runVeleroCheck(ctx, c, t)
		out = append(out, CheckRecord{Name: c.Name(), Type: c.Type(), Result: Result(o.Status), Message: o.Message, Evidence: o.Evidence, Seconds: time.Since(start).Seconds()})
	}
	return out
}

func runVeleroCheck(ctx context.Context, c verify.VeleroCheck, t *verify.VeleroTarget) (o verify.Outcome) {
	defer func() {
		if p := recover(); p != nil {
			o = verify.Outcome{Status: verify.StatusError, Message: fmt.Sprintf("internal error in check: %v", p)}
		}
	}()
	return c.Run(ctx, t)
}

// NotVerified marks every check skipped.
func (d *VeleroDriver) NotVerified(reason string) []CheckRecord {
	out := make([]CheckRecord, 0, len(d.checks))
	for _, c := range d.checks {
		out = append(out, CheckRecord{Name: c.Name(), Type: c.Type(), Result: Skipped, Message: reason})
	}
	return out
}

// Cleanup deletes the scratch namespaces (only firedrill's, and waits until they are gone), the
// Restore, the canaries, the kind cluster and — with deleteAfter — the Backup. With keep the scratch
// namespaces stay until keepFor passes (the janitor deletes them then).
func (d *VeleroDriver) Cleanup(ctx context.Context, rc *RunContext, keep bool) error {
	var errs []error
	if len(d.prepared) > 0 && d.kind == nil {
		cs, err := kubernetes.NewForConfig(d.target)
		if err == nil {
			mgr := scratch.New(cs)
			if keep {
				keepFor := d.sc.Spec.Cleanup.KeepFor.Duration
				if keepFor <= 0 {
					keepFor = scenarios.DefaultKeepFor
				}
				err = mgr.Extend(ctx, d.runID, d.prepared, time.Now().Add(keepFor))
				rc.Progress.Note(fmt.Sprintf("scratch namespaces kept for %s: %s", keepFor, strings.Join(d.prepared, ", ")))
			} else {
				rc.Progress.Note("deleting scratch namespaces " + strings.Join(d.prepared, ", "))
				err = mgr.Delete(ctx, d.runID, d.prepared)
			}
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	if d.restore != nil && d.kind == nil {
		if err := d.dst.DeleteRestore(ctx, d.restore.Name); err != nil {
			errs = append(errs, err)
		}
	}
	if d.kind != nil && !keep {
		if err := d.kind.Delete(); err != nil {
			errs = append(errs, fmt.Errorf("delete kind cluster %s: %w", d.kind.Name, err))
		}
	}
	if len(d.canaryWrites) > 0 {
		if cs, err := kubernetes.NewForConfig(d.source); err == nil {
			for _, ns := range d.canaryWrites {
				if err := cs.CoreV1().ConfigMaps(ns).Delete(ctx, scenarios.CanaryConfigMap, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
					errs = append(errs, fmt.Errorf("remove canary ConfigMap %s/%s: %w", ns, scenarios.CanaryConfigMap, err))
				}
			}
		}
	}
	if d.createdBy && d.spec.Create.DeleteAfter {
		rc.Progress.Note("deleting backup " + d.backupName() + " (deleteAfter)")
		if err := d.src.DeleteBackup(ctx, d.backupName()); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Plan describes the run without doing it. With a preflight done, it names the backup chosen
// and the scratch namespaces.
func (d *VeleroDriver) Plan() Plan {
	p := Plan{Scenario: d.sc.Metadata.Name}
	ns := d.spec.Namespace
	switch {
	case d.spec.Create != nil:
		c := d.spec.Create
		p.Backup = append(p.Backup, fmt.Sprintf("create Velero backup firedrill-<run id> of namespaces %s in %s (ttl %s, volume snapshots %v)",
			strings.Join(c.IncludedNamespaces, ", "), orDefault(c.StorageLocation, "the default location"), c.TTL.String(), c.SnapshotVolumes != nil && *c.SnapshotVolumes))
		if c.DeleteAfter {
			p.Backup = append(p.Backup, "delete that backup after the drill (deleteAfter)")
		}
	case d.spec.LatestFrom != nil:
		p.Backup = append(p.Backup, fmt.Sprintf("use the newest Completed backup of Velero schedule %s/%s", ns, d.spec.LatestFrom.Schedule))
	default:
		p.Backup = append(p.Backup, fmt.Sprintf("use Velero backup %s/%s", ns, d.spec.Name))
	}
	if b := d.backup; b != nil {
		p.Backup = append(p.Backup, fmt.Sprintf("chosen: %s (%s, %d items, started %s, %s old, location %s)", b.Name, b.Phase, b.ItemsBackedUp,
			b.Started.Format(time.RFC3339), time.Since(b.Started).Round(time.Second), b.StorageLocation))
	}
	r := d.sc.Spec.Restore
	switch {
	case r.ScratchNamespace != nil:
		p.Restore = append(p.Restore, "restore with Velero into new scratch namespaces of the source cluster")
	case r.Cluster != nil:
		p.Restore = append(p.Restore, fmt.Sprintf("restore with the Velero of the second cluster %s (context %s), which reads the same storage location", r.Cluster.Kubeconfig, orDefault(r.Cluster.Context, "current")))
	default:
		p.Restore = append(p.Restore, "create an ephemeral kind cluster, install Velero "+r.Kind.Velero.Image+" reading the same location, restore there; delete the cluster after")
	}
	if len(d.mapping) > 0 {
		p.Restore = append(p.Restore, "namespaces: "+describeMapping(d.mapping))
	} else {
		tmpl := d.mappingTemplates()
		if len(tmpl) == 0 {
			p.Restore = append(p.Restore, "namespaces: every namespace of the backup → "+scenarios.DefaultNamespaceTemplate)
		} else {
			p.Restore = append(p.Restore, "namespaces: "+describeMapping(tmpl))
		}
	}
	p.Restore = append(p.Restore, "cluster-scoped resources are not restored")
	iso, _ := d.scratchIsolation()
	p.Isolation = append(p.Isolation, "scratch namespaces labelled "+scratch.LabelRun+"=<run id> and "+scratch.LabelManagedBy+"="+scratch.ManagedBy+"; only those are ever deleted")
	if iso.DenyNetwork {
		line := "NetworkPolicy " + scratch.NetworkPolicyName + ": no traffic in or out except between the run's own scratch namespaces"
		if iso.AllowDNS {
			line += ", and DNS"
		}
		p.Isolation = append(p.Isolation, line)
	} else {
		p.Isolation = append(p.Isolation, "network NOT isolated (denyNetwork: false)")
	}
	var quota []string
	for _, k := range slices.Sorted(maps.Keys(iso.Quota)) {
		v := iso.Quota[k]
		quota = append(quota, fmt.Sprintf("%s=%s", k, v.String()))
	}
	p.Isolation = append(p.Isolation, "ResourceQuota "+scratch.ResourceQuotaName+": "+strings.Join(quota, ", "))
	p.Isolation = append(p.Isolation, "LoadBalancer and NodePort Services restored as ClusterIP; external IPs dropped")
	if d.isolation.SuspendCronJobs == nil || *d.isolation.SuspendCronJobs {
		p.Isolation = append(p.Isolation, "CronJobs restored suspended")
	}
	p.Isolation = append(p.Isolation, "not restored: "+strings.Join(velero.ExcludedResources(d.isolation), ", "))
	for _, c := range d.sc.Spec.Checks {
		p.Checks = append(p.Checks, PlanCheck{Name: c.Name, Type: c.Type(), Description: describeVeleroCheck(c)})
	}
	if o := d.sc.Spec.Objectives; o.RTO.Duration > 0 {
		p.Objectives = append(p.Objectives, "RTO ≤ "+o.RTO.String()+" (restore start until every check passed)")
	}
	if o := d.sc.Spec.Objectives; o.RPO.Duration > 0 {
		p.Objectives = append(p.Objectives, "RPO ≤ "+o.RPO.String()+" (age of the backup's data at restore start)")
	}
	p.Cleanup = append(p.Cleanup, fmt.Sprintf("delete the scratch namespaces and wait until they are gone; delete the Restore (policy %s, keepFor %s)", d.sc.Spec.Cleanup.Policy, d.sc.Spec.Cleanup.KeepFor.String()))
	if d.spec.Create != nil {
		p.Writes = append(p.Writes, "the source cluster: Backup firedrill-<run id> in namespace "+ns)
		if d.hasCanary() {
			p.Writes = append(p.Writes, "the source cluster: ConfigMap "+scenarios.CanaryConfigMap+" in "+strings.Join(d.spec.Create.IncludedNamespaces, ", ")+" (deleted at cleanup)")
		}
	}
	if r.ScratchNamespace != nil {
		p.Writes = append(p.Writes, "the source cluster: the scratch namespaces, and a Restore and its isolation ConfigMap in namespace "+ns)
	}
	return p
}

func describeMapping(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + " → " + m[k]
	}
	return strings.Join(parts, ", ")
}

func describeVeleroCheck(c scenarios.Check) string {
	switch {
	case c.ObjectsRestored != nil:
		return "every item of the backup exists in its scratch namespace (excluded resources aside)"
	case c.ObjectsMatch != nil:
		return "restored " + strings.Join(c.ObjectsMatch.Resources, ", ") + " equal the backed-up ones (Secrets by digest)"
	case c.WorkloadsReady != nil:
		return "Deployments, StatefulSets and DaemonSets ready, Pods healthy, PVCs Bound, Jobs complete within " + c.WorkloadsReady.Timeout.String()
	case c.Job != nil:
		return fmt.Sprintf("Job with image %s succeeds within %s in the scratch copy", c.Job.Image, c.Job.Timeout.String())
	case c.Canary != nil:
		return "the ConfigMap " + scenarios.CanaryConfigMap + " written just before the backup comes back with its nonce"
	}
	return ""
}
