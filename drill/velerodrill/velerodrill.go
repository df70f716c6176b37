// Package velerodrill drills Velero backups: it finds or makes the backup, creates isolated
// scratch namespaces (in the source cluster, a second cluster, or a kind cluster), restores into
// them with Velero, runs the checks and deletes only what it created.
package velerodrill

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

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/sample"
	"github.com/firedrill-dev/firedrill/scenarios"
	"github.com/firedrill-dev/firedrill/scratch"
	"github.com/firedrill-dev/firedrill/snapshot/velero"
	"github.com/firedrill-dev/firedrill/verify"
)

// Kind is the backup kind this driver drills: spec.backup.velero.
const Kind = "velero"

// Options are the operator's choices for Velero drills that are not part of the scenario.
type Options struct {
	// Kubeconfig and Context override spec.source (firedrill --kubeconfig/--context).
	Kubeconfig, Context string
	// DefaultRequest is given to containers without requests in scratch namespaces (a LimitRange),
	// so that the quota's cpu/memory limits do not refuse restored pods. Zero: 10m CPU, 16Mi.
	DefaultRequest corev1.ResourceList
	// ProbeImage is firedrill-probe's image, which the http, tcp, isolation and volumeData checks
	// run in short-lived pods (firedrill run --probe-image). Empty: DefaultProbeImage.
	ProbeImage string
}

// DefaultProbeImage is the probe image when none is set: firedrill-probe of the same release.
const DefaultProbeImage = "ghcr.io/firedrill-dev/firedrill-probe:latest"

// Driver drills Velero backups.
type Driver struct {
	opts Options
}

var _ drill.Driver = (*Driver)(nil)

// New returns the Velero driver.
func New(opts Options) *Driver { return &Driver{opts: opts} }

// Kind is "velero".
func (*Driver) Kind() string { return Kind }

// NewRun prepares one drill of a loaded scenario whose backup is a Velero backup.
func (d *Driver) NewRun(sc *scenarios.Scenario, rc *drill.RunContext) (drill.Run, error) {
	target := sc.Spec.Restore.VeleroTarget()
	if sc.Spec.Backup.Velero == nil || target == nil {
		return nil, errors.New("a Velero drill needs spec.backup.velero and one scratchNamespace, cluster or kind restore")
	}
	checks, err := verify.NewVeleroChecks(sc.Spec.Checks)
	if err != nil {
		return nil, err
	}
	r := &run{sc: sc, opts: d.opts, rc: rc, spec: sc.Spec.Backup.Velero, checks: checks, restoreTo: target}
	for _, g := range sc.Spec.Restore.Order {
		gc, err := verify.NewVeleroChecks(g.Checks)
		if err != nil {
			return nil, fmt.Errorf("restore group %s: %w", g.Name, err)
		}
		r.groupChecks = append(r.groupChecks, gc)
	}
	return r, nil
}

var _ drill.Grouped = (*run)(nil)

// run is one Velero drill: what it found and created, step by step, undone by Cleanup.
type run struct {
	sc     *scenarios.Scenario
	opts   Options
	rc     *drill.RunContext
	spec   *scenarios.VeleroBackup
	checks []verify.VeleroCheck

	source       *rest.Config
	sourceKube   kubernetes.Interface
	sourceAPI    *verify.Cluster // the source cluster, as the checks reach it
	volumes      []verify.PodVolume
	src          *velero.Client // Velero of the source cluster
	backup       *velero.BackupInfo
	createdBy    bool // this run created the backup
	items        []velero.Item
	canaries     map[string]string // backed-up namespace → nonce
	canaryWrites []string          // namespaces where the canary ConfigMap was written
	canaryAt     time.Time
	target       *verify.Cluster // the cluster restored into: the source, a second cluster or kind
	dst          *velero.Client  // Velero restoring (the source's, the second cluster's or kind's)
	kind         *velero.KindCluster
	mapping      map[string]string
	prepared     []string                // scratch namespaces this run created
	restores     []*velero.RestoreInfo   // one, or one per restore group
	restoreTo    *scenarios.VeleroTarget // the scenario's restore target
	targetReady  bool                    // the kind cluster made, the target's Velero synced
	groupChecks  [][]verify.VeleroCheck
	// latestFrom: how the preflight chose the backup, and why none could be chosen (a finding:
	// the backup step fails with it).
	selection *drill.SelectionRecord
	noBackup  error
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

func (r *run) sourceConfig() (*rest.Config, error) {
	kc, ctx := r.opts.Kubeconfig, r.opts.Context
	if s := r.sc.Spec.Source; s != nil && kc == "" && ctx == "" {
		kc, ctx = s.Kubeconfig, s.Context
	}
	return restConfig(kc, ctx)
}

// Preflight finds the backup and checks its storage location and the restore target, reading
// only. A mapping onto an existing namespace is refused here, before anything is written.
func (r *run) Preflight(ctx context.Context) error {
	cfg, err := r.sourceConfig()
	if err != nil {
		return err
	}
	r.source = cfg
	if r.sourceAPI, err = verify.NewCluster(cfg); err != nil {
		return err
	}
	r.sourceKube = r.sourceAPI.Kube
	if r.src, err = velero.New(cfg, r.spec.Namespace); err != nil {
		return err
	}
	r.src = r.src.ForRun(r.rc.ID).Expiring(r.rc.Expiry())
	if err := r.src.Ping(ctx); err != nil {
		return err
	}
	switch {
	case r.spec.LatestFrom != nil:
		err = r.choose(ctx)
	case r.spec.Name != "":
		r.backup, err = r.src.GetBackup(ctx, r.spec.Name)
	}
	if err != nil {
		return err
	}
	if r.noBackup != nil {
		return nil // there is nothing to restore, so no location or target to check
	}
	location := ""
	if r.backup != nil {
		location = r.backup.StorageLocation
		r.rc.Progress.Note(fmt.Sprintf("backup %s: %s, %d items, %s old", r.backup.Name, r.backup.Phase, r.backup.ItemsBackedUp, time.Since(r.backup.Started).Round(time.Second)))
	} else {
		location = r.spec.Create.StorageLocation
	}
	loc, err := r.src.CheckLocation(ctx, location)
	if err != nil {
		return err
	}
	r.rc.Progress.Note(fmt.Sprintf("backup storage location %s is %s", loc.Name, loc.Phase))

	if err := r.connectTarget(ctx); err != nil {
		return err
	}
	if r.backup != nil || r.spec.Create != nil {
		if err := r.planMapping(ctx); err != nil {
			return err
		}
	}
	return nil
}

// choose lists the backups of latestFrom's schedule or selector and chooses the one to drill
// (drill/sample). A window that holds none is no preflight problem: the backup step fails with
// it, recording the selection.
func (r *run) choose(ctx context.Context) error {
	l := r.spec.LatestFrom
	list, err := r.src.ListBackups(ctx, l.Schedule, l.Selector)
	if err != nil {
		return err
	}
	candidates := make([]sample.Candidate, len(list))
	for i, b := range list {
		candidates[i] = sample.Candidate{Name: b.Name, Time: b.Started, Unusable: b.Unusable}
	}
	i, sel, err := sample.ForRun(r.rc, l.Sampling, candidates)
	r.selection = sel
	switch {
	case drill.IsFailure(err):
		r.noBackup = err
		return nil
	case err != nil:
		hint := ""
		if l.Schedule != "" && len(list) == 0 {
			hint = fmt.Sprintf(": Schedule %s has not made a backup yet", l.Schedule)
		}
		return fmt.Errorf("%w: %s in namespace %s: %w%s", velero.ErrBackupNotFound, r.latestSource(), r.spec.Namespace, err, hint)
	}
	r.backup = list[i]
	return nil
}

// latestSource names latestFrom's backups: "schedule nightly", "selector team=shop".
func (r *run) latestSource() string {
	if l := r.spec.LatestFrom; l.Schedule != "" {
		return "schedule " + l.Schedule
	}
	return "selector " + velero.SelectorString(r.spec.LatestFrom.Selector)
}

// selectedBy says how latestFrom chose, for the record: "newest Completed backup of the schedule",
// "random Completed backup of the selector within 7d".
func selectedBy(l *scenarios.VeleroLatestFrom) string {
	what, of := "newest", "schedule"
	if l.Select == scenarios.SelectRandom {
		what = "random"
	}
	if l.Schedule == "" {
		of = "selector"
	}
	s := what + " Completed backup of the " + of
	if l.Window != nil {
		s += " within " + l.Window.String()
	}
	return s
}

// connectTarget reaches the cluster the restore goes to: the source itself, a second cluster or
// (checked only, created in the restore step) a kind cluster.
func (r *run) connectTarget(ctx context.Context) error {
	tg := r.sc.Spec.Restore
	switch {
	case tg.ScratchNamespace != nil:
		r.dst, r.target = r.src, r.sourceAPI
		return nil
	case tg.Cluster != nil:
		cfg, err := restConfig(tg.Cluster.Kubeconfig, tg.Cluster.Context)
		if err != nil {
			return fmt.Errorf("second cluster: %w", err)
		}
		if err := r.setTarget(cfg); err != nil {
			return fmt.Errorf("second cluster: %w", err)
		}
		dst, err := velero.New(cfg, tg.Cluster.VeleroNamespace)
		if err != nil {
			return fmt.Errorf("second cluster: %w", err)
		}
		r.dst = dst.ForRun(r.rc.ID).Expiring(r.rc.Expiry())
		if err := r.dst.Ping(ctx); err != nil {
			return fmt.Errorf("second cluster: %w", err)
		}
	case tg.Kind != nil:
		engine, err := velero.FindContainerEngine(ctx, velero.SystemEngineProbe())
		if err != nil {
			return err
		}
		r.rc.Progress.Note("container engine for kind: " + engine)
	}
	return nil
}

// setTarget builds, once for the run, the clients of the cluster restored into.
func (r *run) setTarget(cfg *rest.Config) error {
	c, err := verify.NewCluster(cfg)
	if err != nil {
		return err
	}
	r.target = c
	return nil
}

// planMapping renders the scratch name of every namespace to restore — those the mapping names,
// else every namespace of the backup — and refuses names that exist in the target.
func (r *run) planMapping(ctx context.Context) error {
	var sources []string
	tmpls := r.restoreTo.NamespaceMapping
	switch {
	case len(r.sc.Spec.Restore.Order) > 0:
		// Only what the groups restore; with create, validation saw that they cover it all.
		for _, g := range r.sc.Spec.Restore.Order {
			sources = append(sources, g.Namespaces...)
		}
		slices.Sort(sources)
	case len(tmpls) > 0:
		sources = slices.Sorted(maps.Keys(tmpls))
	case r.spec.Create != nil:
		sources = slices.Clone(r.spec.Create.IncludedNamespaces)
	default:
		sources = r.backup.IncludedNamespaces
		if len(sources) == 0 || slices.Contains(sources, "*") {
			listed, err := r.src.BackupResourceList(ctx, r.backup.Name)
			if err != nil {
				return fmt.Errorf("which namespaces backup %s holds: %w", r.backup.Name, err)
			}
			sources = velero.Namespaces(listed)
		}
	}
	if len(sources) == 0 {
		return drill.Refuse(fmt.Errorf("backup %s holds no namespaced objects: nothing to restore into scratch namespaces", r.backupName()))
	}
	r.mapping = map[string]string{}
	for _, ns := range sources {
		tmpl := tmpls[ns]
		if tmpl == "" {
			tmpl = scenarios.DefaultNamespaceTemplate
		}
		name, err := scenarios.RenderNamespace(tmpl, scenarios.NamespaceData{RunID: r.rc.ID, Namespace: ns, Scenario: r.sc.Metadata.Name})
		if err != nil {
			return drill.Refuse(fmt.Errorf("namespace mapping of %s: %w", ns, err))
		}
		r.mapping[ns] = shortenName(name)
	}
	if r.sc.Spec.Restore.Kind != nil {
		return nil // the kind cluster does not exist yet: every name is free
	}
	cs := r.target.Kube
	var taken []string
	for _, ns := range slices.Sorted(maps.Values(r.mapping)) {
		_, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		switch {
		case err == nil:
			taken = append(taken, ns)
		case !apierrors.IsNotFound(err):
			return fmt.Errorf("check that namespace %s is free: %w", ns, err)
		}
	}
	if len(taken) > 0 {
		return drill.Refuse(fmt.Errorf("namespace %s exists: a drill only restores into namespaces it creates; choose another namespaceMapping", strings.Join(taken, ", ")))
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

func (r *run) backupName() string {
	if r.backup != nil {
		return r.backup.Name
	}
	return "firedrill-" + r.rc.ID
}

// Backup makes the backup (after writing the canaries) or uses the one found, then reads its
// contents for the checks.
func (r *run) Backup(ctx context.Context) (drill.BackupRecord, error) {
	b := drill.BackupRecord{Kind: "velero-backup"}
	if r.noBackup != nil {
		b.Source, b.Location, b.Selection = "velero-"+r.latestSource(), r.spec.Namespace, r.selection
		return b, r.noBackup
	}
	if r.spec.Create != nil {
		if err := r.writeCanaries(ctx); err != nil {
			return b, err
		}
		if err := r.takeManifests(ctx); err != nil {
			return b, err
		}
		r.rc.Progress.Note("creating backup " + r.backupName() + " of " + strings.Join(r.spec.Create.IncludedNamespaces, ", "))
		if _, err := r.src.CreateBackup(ctx, r.backupName(), *r.spec.Create, map[string]string{"firedrill.dev/scenario": r.sc.Metadata.Name}); err != nil {
			return b, err
		}
		r.createdBy = true
		info, err := r.src.WaitBackup(ctx, r.backupName(), func(done, total int) { r.rc.Progress.Bytes(int64(done), int64(total)) })
		if err != nil {
			return b, judge(err)
		}
		r.backup = info
		if err := r.planMapping(ctx); err != nil {
			return b, err
		}
	}
	switch {
	case r.spec.Create != nil:
		b.Source = "velero-create"
	case r.spec.LatestFrom != nil:
		b.Source = "velero-" + r.latestSource()
		b.SelectedBy = selectedBy(r.spec.LatestFrom)
		b.Selection = r.selection
	default:
		b.Source = "velero-backup"
	}
	b.Name, b.Location, b.Items = r.backup.Name, r.backup.StorageLocation, r.backup.ItemsBackedUp
	created := r.backup.Started.UTC()
	if t := r.canaryTime(); !t.IsZero() {
		created = t
	}
	b.CreatedAt = &created

	r.rc.Progress.Note("reading the backup's contents through a Velero DownloadRequest")
	items, err := r.src.BackupContents(ctx, r.backup.Name)
	if err != nil {
		return b, judge(fmt.Errorf("read backup %s contents: %w", r.backup.Name, err))
	}
	r.items = items
	if b.Volumes, err = r.backedUpVolumes(ctx); err != nil {
		return b, err
	}
	r.rc.Progress.Note(fmt.Sprintf("backup %s holds %d items and %d pod volumes; restoring %s", r.backup.Name, len(items), len(b.Volumes), describeMapping(r.mapping)))
	return b, nil
}

func (r *run) canaryTime() time.Time {
	if len(r.canaries) == 0 {
		return time.Time{}
	}
	return r.canaryAt
}

func (r *run) hasCanary() bool {
	for _, c := range r.sc.Spec.Checks {
		if c.Canary != nil {
			return true
		}
	}
	return false
}

// writeCanaries writes a ConfigMap holding a fresh nonce into each namespace the backup will
// include, so that the restored copy can prove it holds the newest writes.
func (r *run) writeCanaries(ctx context.Context) error {
	if !r.hasCanary() {
		return nil
	}
	cs := r.sourceKube
	labels := map[string]string{scratch.LabelManagedBy: scratch.ManagedBy, scratch.LabelRun: r.rc.ID}
	if sel := r.spec.Create.LabelSelector; sel != nil {
		// The backup selects by labels: the canary must carry them to be backed up.
		maps.Copy(labels, sel.MatchLabels)
	}
	r.canaries = map[string]string{}
	r.canaryAt = time.Now().UTC()
	for _, ns := range r.spec.Create.IncludedNamespaces {
		nonce := randomNonce()
		cm := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: scenarios.CanaryConfigMap, Namespace: ns, Labels: labels,
				Annotations: map[string]string{scratch.AnnotationExpires: scratch.FormatExpiry(r.rc.Expiry())}},
			Data: map[string]string{"nonce": nonce, "run": r.rc.ID, "writtenAt": r.canaryAt.Format(time.RFC3339)},
		}
		existing, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, cm.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			_, err = cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{})
		case err == nil && existing.Labels[scratch.LabelManagedBy] == scratch.ManagedBy:
			existing.Data, existing.Labels = cm.Data, labels
			if existing.Annotations == nil {
				existing.Annotations = map[string]string{}
			}
			maps.Copy(existing.Annotations, cm.Annotations)
			_, err = cs.CoreV1().ConfigMaps(ns).Update(ctx, existing, metav1.UpdateOptions{})
		case err == nil:
			return drill.Refuse(fmt.Errorf("namespace %s has a ConfigMap %s that is not firedrill's: firedrill will not overwrite it; remove the canary check or that ConfigMap", ns, cm.Name))
		}
		if err != nil {
			return fmt.Errorf("write canary ConfigMap %s/%s: %w", ns, cm.Name, err)
		}
		r.canaries[ns] = nonce
		r.canaryWrites = append(r.canaryWrites, ns)
	}
	r.rc.Progress.Note("canary ConfigMaps written to " + strings.Join(r.canaryWrites, ", "))
	return nil
}

func randomNonce() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Restore creates the target (a kind cluster when asked), the isolated scratch namespaces, and
// restores the backup into them with Velero.
func (r *run) Restore(ctx context.Context) error {
	return r.restoreNamespaces(ctx, slices.Sorted(maps.Keys(r.mapping)), "")
}

// Groups names the restore groups of spec.restore.order; none without it.
func (r *run) Groups() []string {
	var out []string
	for _, g := range r.sc.Spec.Restore.Order {
		out = append(out, g.Name)
	}
	return out
}

// RestoreGroup restores the namespaces of group i, with a Velero Restore of its own.
func (r *run) RestoreGroup(ctx context.Context, i int) error {
	g := r.sc.Spec.Restore.Order[i]
	return r.restoreNamespaces(ctx, g.Namespaces, g.Name)
}

// prepareTarget creates the kind cluster when asked and waits until the restoring Velero sees the
// backup: once per run, before the first restore.
func (r *run) prepareTarget(ctx context.Context) error {
	if r.targetReady {
		return nil
	}
	if k := r.sc.Spec.Restore.Kind; k != nil {
		r.rc.Progress.Note("creating kind cluster")
		kc, err := velero.CreateKindCluster(ctx, velero.KindOptions{Target: *k, RunID: r.rc.ID, Dir: r.rc.WorkDir, Expires: r.rc.Expiry()})
		if err != nil {
			return fmt.Errorf("create kind cluster: %w", err)
		}
		r.kind = kc
		if err := r.setTarget(kc.RESTConfig()); err != nil {
			return err
		}
		if r.dst, err = kc.InstallVelero(ctx, k.Velero, r.rc.ID); err != nil {
			return fmt.Errorf("install Velero into kind cluster %s: %w", kc.Name, err)
		}
	}
	if r.dst != r.src {
		r.rc.Progress.Note("waiting for the target's Velero to see backup " + r.backup.Name)
		if _, err := r.dst.WaitForBackup(ctx, r.backup.Name); err != nil {
			return err
		}
	}
	r.targetReady = true
	return nil
}

// restoreNamespaces creates the scratch namespaces of the backed-up namespaces sources, isolated,
// and restores them into them with Velero (the Restore named after group, when one is given).
func (r *run) restoreNamespaces(ctx context.Context, sources []string, group string) error {
	if err := r.prepareTarget(ctx); err != nil {
		return err
	}
	mapping := map[string]string{}
	for _, ns := range sources {
		mapping[ns] = r.mapping[ns]
	}
	mgr := scratch.New(r.target.Kube)
	names := slices.Sorted(maps.Values(mapping))
	iso, err := r.scratchIsolation()
	if err != nil {
		return drill.Refuse(err)
	}
	// The janitor may take them once the run and its cleanup could no longer be going on.
	expires := r.rc.Expiry()
	if err := mgr.Prepare(ctx, r.rc.ID, r.sc.Metadata.Name, names, iso, expires); err != nil {
		if errors.Is(err, scratch.ErrExists) || errors.Is(err, scratch.ErrInvalidName) {
			return drill.Refuse(err)
		}
		return fmt.Errorf("prepare scratch namespaces: %w", err)
	}
	r.prepared = append(r.prepared, names...)
	r.rc.Progress.Note("scratch namespaces ready and isolated: " + strings.Join(names, ", "))
	if err := mgr.Confirm(ctx, r.rc.ID, names); err != nil {
		return err
	}
	opts := velero.RestoreOptions{
		Backup: r.backup.Name, NamespaceMapping: mapping, Isolation: r.restoreTo.Isolation, EphemeralCluster: r.kind != nil,
		Labels: map[string]string{"firedrill.dev/scenario": r.sc.Metadata.Name},
	}
	if group != "" {
		opts.Name = "firedrill-" + r.rc.ID + "-" + group
		opts.Labels["firedrill.dev/group"] = group
	}
	info, err := r.dst.Restore(ctx, opts, func(done, total int) { r.rc.Progress.Bytes(int64(done), int64(total)) })
	if info != nil {
		r.restores = append(r.restores, info)
	}
	if err != nil {
		return judge(err)
	}
	r.rc.Progress.Note(fmt.Sprintf("restore %s %s: %d of %d items, %d warnings", info.Name, info.Phase, info.ItemsRestored, info.TotalItems, info.Warnings))
	return r.restoredVolumes(ctx, info.Name)
}

// judge decides whether an error from Velero is a finding about the backup (the drill fails) or
// a problem running the drill (an error): the one place that decides it.
//   - Velero not processing (down): error, nothing was learnt about the backup;
//   - a backup that ended Failed, PartiallyFailed or FailedValidation: failed;
//   - a restore that ended PartiallyFailed: failed (items of the backup did not come back); one
//     that ended Failed: error (Velero could not carry it out: a location, a plugin);
//   - a restore not finished within the drill's time: failed, the backup does not restore in it
//     (a backup firedrill makes that is slow says nothing about backups to restore: error);
//   - backup contents that do not read as a Velero tarball: failed.
func judge(err error) error {
	var (
		nf *velero.NotFinishedError
		re *velero.RestoreError
	)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, velero.ErrNotProcessing):
		return err
	case errors.As(err, &nf):
		if nf.Kind == "restore" && errors.Is(err, context.DeadlineExceeded) {
			return drill.Fail(err)
		}
		return err
	case errors.As(err, &re):
		if re.Phase == "PartiallyFailed" {
			return drill.Fail(err)
		}
		return err
	case errors.Is(err, velero.ErrBackupFailed), errors.Is(err, velero.ErrCorruptContents):
		return drill.Fail(err)
	}
	return err
}

func (r *run) scratchIsolation() (scratch.Isolation, error) {
	iso, err := ScratchIsolation(r.restoreTo.Isolation)
	if err == nil && r.opts.DefaultRequest != nil && iso.DefaultRequest != nil {
		iso.DefaultRequest = r.opts.DefaultRequest
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
func (r *run) Target() *drill.TargetRecord {
	if len(r.mapping) == 0 {
		return nil
	}
	tg := r.sc.Spec.Restore
	t := &drill.TargetRecord{Kind: r.restoreTo.Kind, Namespaces: maps.Clone(r.mapping)}
	for _, v := range r.volumes {
		if v.Restore != nil {
			t.Volumes = append(t.Volumes, volumeRecord(*v.Restore))
		}
	}
	switch {
	case tg.Cluster != nil:
		t.Cluster = tg.Cluster.Kubeconfig
		if tg.Cluster.Context != "" {
			t.Cluster += " (context " + tg.Cluster.Context + ")"
		}
	case r.kind != nil:
		t.Cluster = r.kind.Name
	}
	return t
}

// Checks binds the checks to the restored copy; without a restore none can be judged.
func (r *run) Checks(restored bool) []drill.Check {
	return r.bind(r.checks, r.sc.Spec.Checks, r.verifyTarget(nil), restored)
}

// GroupChecks binds the checks of restore group i to what the group restored: its namespaces,
// their items and volumes.
func (r *run) GroupChecks(i int, restored bool) []drill.Check {
	g := r.sc.Spec.Restore.Order[i]
	return r.bind(r.groupChecks[i], g.Checks, r.verifyTarget(g.Namespaces), restored)
}

// verifyTarget is what the checks see of this run; namespaces, when given, narrow it to those
// backed-up namespaces (a restore group's).
func (r *run) verifyTarget(namespaces []string) *verify.VeleroTarget {
	t := &verify.VeleroTarget{
		Scenario: r.sc.Metadata.Name, RunID: r.rc.ID, Cluster: r.target, NamespaceMapping: r.mapping,
		Items: r.items, Canaries: r.canaries, Source: r.sourceAPI, Backup: r.backup, ProbeImage: r.probeImage(),
		Volumes: r.volumes,
	}
	if r.backup != nil {
		t.BackupName = r.backup.Name
	}
	if n := len(r.restores); n > 0 {
		t.RestoreName, t.ExcludedResources = r.restores[n-1].Name, r.restores[n-1].ExcludedResources
	}
	if namespaces == nil {
		return t
	}
	in := func(ns string) bool { return slices.Contains(namespaces, ns) }
	t.Reachable = r.mapping // earlier groups' namespaces are restored by now
	t.NamespaceMapping = map[string]string{}
	for _, ns := range namespaces {
		if to, ok := r.mapping[ns]; ok {
			t.NamespaceMapping[ns] = to
		}
	}
	t.Items = slices.DeleteFunc(slices.Clone(r.items), func(it velero.Item) bool { return it.Namespace == "" || !in(it.Namespace) })
	t.Volumes = slices.DeleteFunc(slices.Clone(r.volumes), func(v verify.PodVolume) bool { return !in(v.Namespace) })
	canaries := map[string]string{}
	for ns, nonce := range r.canaries {
		if in(ns) {
			canaries[ns] = nonce
		}
	}
	t.Canaries = canaries
	return t
}

func (r *run) bind(checks []verify.VeleroCheck, specs []scenarios.Check, t *verify.VeleroTarget, restored bool) []drill.Check {
	out := make([]drill.Check, len(checks))
	for i, c := range checks {
		out[i] = drill.Check{Name: c.Name(), Type: c.Type(), Description: verify.Describe(specs[i], Kind)}
		if restored {
			out[i].Run = func(ctx context.Context) drill.CheckOutcome {
				o := c.Run(ctx, t)
				return drill.CheckOutcome{Result: drill.Result(o.Status), Message: o.Message, Evidence: o.Evidence}
			}
		}
	}
	return out
}

// Cleanup deletes the scratch namespaces (only firedrill's, and waits until they are gone), the
// Restore, the canaries, the kind cluster and — with deleteAfter — the Backup. With keep the scratch
// namespaces stay until keepFor passes (the janitor deletes them then).
func (r *run) Cleanup(ctx context.Context, keep bool) error {
	// The scratch namespaces go (Kubernetes takes seconds) while the rest is removed.
	scratchDone := make(chan error, 1)
	go func() { scratchDone <- r.cleanupScratch(ctx, keep) }()
	var errs []error
	for _, rs := range r.restores {
		if r.kind != nil {
			break // the cluster goes, and its Restores with it
		}
		if err := r.dst.DeleteRestore(ctx, rs.Name); err != nil {
			errs = append(errs, err)
		}
	}
	if r.kind != nil && !keep {
		if err := r.kind.Delete(); err != nil {
			errs = append(errs, fmt.Errorf("delete kind cluster %s: %w", r.kind.Name, err))
		}
	}
	if r.kind != nil && keep {
		if err := r.kind.Extend(ctx, r.rc.ID, time.Now().Add(r.keepFor())); err != nil {
			errs = append(errs, err)
		}
	}
	for _, ns := range r.canaryWrites {
		if err := r.sourceKube.CoreV1().ConfigMaps(ns).Delete(ctx, scenarios.CanaryConfigMap, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove canary ConfigMap %s/%s: %w", ns, scenarios.CanaryConfigMap, err))
		}
	}
	if r.createdBy && r.spec.Create.DeleteAfter {
		r.rc.Progress.Note("deleting backup " + r.backupName() + " (deleteAfter)")
		if err := r.src.DeleteBackup(ctx, r.backupName()); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(append([]error{<-scratchDone}, errs...)...)
}

// cleanupScratch deletes the run's scratch namespaces and waits until they are gone, or with keep
// extends their expiry; the janitor takes them then.
func (r *run) cleanupScratch(ctx context.Context, keep bool) error {
	if len(r.prepared) == 0 || r.kind != nil {
		return nil
	}
	mgr := scratch.New(r.target.Kube)
	if keep {
		keepFor := r.keepFor()
		r.rc.Progress.Note(fmt.Sprintf("scratch namespaces kept for %s: %s", keepFor, strings.Join(r.prepared, ", ")))
		return mgr.Extend(ctx, r.rc.ID, r.prepared, time.Now().Add(keepFor))
	}
	r.rc.Progress.Note("deleting scratch namespaces " + strings.Join(r.prepared, ", "))
	return mgr.Delete(ctx, r.rc.ID, r.prepared)
}

func (r *run) keepFor() time.Duration {
	if d := r.sc.Spec.Cleanup.KeepFor.Duration; d > 0 {
		return d
	}
	return scenarios.DefaultKeepFor
}

// Plan describes the run without doing it. With a preflight done, it names the backup chosen
// and the scratch namespaces.
func (r *run) Plan(p *drill.Plan) {
	ns := r.spec.Namespace
	switch {
	case r.spec.Create != nil:
		c := r.spec.Create
		p.Backup = append(p.Backup, fmt.Sprintf("create Velero backup firedrill-<run id> of namespaces %s in %s (ttl %s, volume snapshots %v)",
			strings.Join(c.IncludedNamespaces, ", "), orDefault(c.StorageLocation, "the default location"), c.TTL.String(), c.SnapshotVolumes != nil && *c.SnapshotVolumes))
		if c.DeleteAfter {
			p.Backup = append(p.Backup, "delete that backup after the drill (deleteAfter)")
		}
	case r.spec.LatestFrom != nil:
		p.Backup = append(p.Backup, fmt.Sprintf("use %s of the Completed backups of Velero %s in namespace %s (by start time)", sample.Says(r.spec.LatestFrom.Sampling), r.latestSource(), ns))
		if r.selection != nil {
			p.Selection = r.selection
			p.Backup = append(p.Backup, sample.Describe(r.selection)...)
		}
	default:
		p.Backup = append(p.Backup, fmt.Sprintf("use Velero backup %s/%s", ns, r.spec.Name))
	}
	if b := r.backup; b != nil {
		p.Backup = append(p.Backup, fmt.Sprintf("chosen: %s (%s, %d items, started %s, %s old, location %s)", b.Name, b.Phase, b.ItemsBackedUp,
			b.Started.Format(time.RFC3339), time.Since(b.Started).Round(time.Second), b.StorageLocation))
	}
	tg := r.sc.Spec.Restore
	switch {
	case tg.ScratchNamespace != nil:
		p.Restore = append(p.Restore, "restore with Velero into new scratch namespaces of the source cluster")
	case tg.Cluster != nil:
		p.Restore = append(p.Restore, fmt.Sprintf("restore with the Velero of the second cluster %s (context %s), which reads the same storage location", tg.Cluster.Kubeconfig, orDefault(tg.Cluster.Context, "current")))
	default:
		p.Restore = append(p.Restore, "create an ephemeral kind cluster, install Velero "+tg.Kind.Velero.Image+" reading the same location, restore there; delete the cluster after")
	}
	if len(r.mapping) > 0 {
		p.Restore = append(p.Restore, "namespaces: "+describeMapping(r.mapping))
	} else {
		tmpl := r.restoreTo.NamespaceMapping
		if len(tmpl) == 0 {
			p.Restore = append(p.Restore, "namespaces: every namespace of the backup → "+scenarios.DefaultNamespaceTemplate)
		} else {
			p.Restore = append(p.Restore, "namespaces: "+describeMapping(tmpl))
		}
	}
	if order := r.sc.Spec.Restore.Order; len(order) > 0 {
		var groups []string
		for _, g := range order {
			groups = append(groups, fmt.Sprintf("%s (%s)", g.Name, strings.Join(g.Namespaces, ", ")))
		}
		p.Restore = append(p.Restore, "in order, one Velero Restore per group, each group's checks passing before the next starts: "+strings.Join(groups, " → "))
	}
	p.Restore = append(p.Restore, "cluster-scoped resources are not restored")
	iso, _ := r.scratchIsolation()
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
	if r.restoreTo.Isolation.SuspendCronJobs == nil || *r.restoreTo.Isolation.SuspendCronJobs {
		p.Isolation = append(p.Isolation, "CronJobs restored suspended")
	}
	p.Isolation = append(p.Isolation, "not restored: "+strings.Join(velero.ExcludedResources(r.restoreTo.Isolation), ", "))
	p.Cleanup = append(p.Cleanup, "delete the scratch namespaces and wait until they are gone; delete the Restore")
	if r.spec.Create != nil {
		p.Writes = append(p.Writes, "the source cluster: Backup firedrill-<run id> in namespace "+ns)
		if r.hasCanary() {
			p.Writes = append(p.Writes, "the source cluster: ConfigMap "+scenarios.CanaryConfigMap+" in "+strings.Join(r.spec.Create.IncludedNamespaces, ", ")+" (deleted at cleanup)")
		}
		if len(r.volumeChecks()) > 0 {
			p.Writes = append(p.Writes, "the source cluster: a short-lived pod per persistent volume in "+strings.Join(r.spec.Create.IncludedNamespaces, ", ")+
				" that mounts the claim read-only and lists its files for volumeData (image "+r.probeImage()+", deleted once read)")
		}
	}
	if tg.ScratchNamespace != nil {
		p.Writes = append(p.Writes, "the source cluster: the scratch namespaces, and a Restore and its isolation ConfigMap in namespace "+ns)
	}
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

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
