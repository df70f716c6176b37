package janitor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/history"
	"github.com/firedrill-dev/firedrill/internal/probepod"
	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/firedrill-dev/firedrill/sandbox/sandboxtest"
	"github.com/firedrill-dev/firedrill/scenarios"
	"github.com/firedrill-dev/firedrill/scratch"
	"github.com/firedrill-dev/firedrill/snapshot/velero"
)

func TestMain(m *testing.M) { sandboxtest.Main(m) }

// env is a Velero sandbox and clients of it. The tests that sweep it are not parallel: a pass
// covers the whole cluster.
type env struct {
	sb   *sandbox.Sandbox
	cs   kubernetes.Interface
	kube client.Client
}

func newEnv(t *testing.T) *env {
	t.Helper()
	sb := sandboxtest.Shared(t, sandbox.Options{Velero: true})
	kube, err := client.New(sb.RESTConfig(), client.Options{Scheme: sandbox.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	return &env{sb: sb, cs: kubernetes.NewForConfigOrDie(sb.RESTConfig()), kube: kube}
}

func unique(prefix string) string {
	b := make([]byte, 3)
	rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

func (e *env) create(t *testing.T, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := e.kube.Create(context.Background(), o); err != nil {
			t.Fatalf("create %T %s: %v", o, o.GetName(), err)
		}
		t.Cleanup(func() { _ = e.kube.Delete(context.Background(), o) })
	}
}

func (e *env) namespace(t *testing.T, prefix string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: unique(prefix)}}
	e.create(t, ns)
	return ns.Name
}

func firedrillMeta(ns, name, run string, expires time.Time) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: ns, Name: name,
		Labels:      map[string]string{scratch.LabelManagedBy: scratch.ManagedBy, scratch.LabelRun: run},
		Annotations: map[string]string{scratch.AnnotationExpires: scratch.FormatExpiry(expires)}}
}

func probePod(meta metav1.ObjectMeta) *corev1.Pod {
	if meta.Labels != nil {
		meta.Labels[probepod.LabelProbe] = "manifest"
	}
	zero := int64(0)
	return &corev1.Pod{ObjectMeta: meta, Spec: corev1.PodSpec{TerminationGracePeriodSeconds: &zero,
		Containers: []corev1.Container{{Name: "probe", Image: "ghcr.io/firedrill-dev/firedrill-probe:latest"}}}}
}

// drillRun makes what a Velero drill of run leaves after a crash at its verify step: a canary
// in the source namespace, a Backup made with deleteAfter, a scratch namespace the backup was
// restored into, the Restore with its modifier ConfigMap, a probe pod, a DownloadRequest.
type drillRun struct {
	run, source, scratchNS, backup, restore, modifier, pod, download string
}

func (e *env) drill(t *testing.T, run string, expires time.Time) drillRun {
	t.Helper()
	ctx := context.Background()
	d := drillRun{run: run, source: e.namespace(t, "shop"), scratchNS: unique("drill")}
	e.create(t, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: d.source, Name: "settings"}, Data: map[string]string{"k": "v"}},
		&corev1.ConfigMap{ObjectMeta: firedrillMeta(d.source, scenarios.CanaryConfigMap, run, expires), Data: map[string]string{"nonce": run}})
	vc, err := velero.New(e.sb.RESTConfig(), sandbox.VeleroNamespace)
	if err != nil {
		t.Fatal(err)
	}
	vc = vc.ForRun(run).Expiring(expires)
	d.backup = "firedrill-" + run
	if _, err := vc.CreateBackup(ctx, d.backup, scenarios.VeleroCreate{IncludedNamespaces: []string{d.source}, DeleteAfter: true}, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vc.DeleteBackup(context.Background(), d.backup) })
	if _, err := vc.WaitBackup(ctx, d.backup, nil); err != nil {
		t.Fatal(err)
	}
	m := scratch.New(e.cs)
	iso := scratch.Isolation{Quota: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("5")}}
	if err := m.Prepare(ctx, run, "shop", []string{d.scratchNS}, iso, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = e.cs.CoreV1().Namespaces().Delete(context.Background(), d.scratchNS, metav1.DeleteOptions{})
	})
	if err := m.Extend(ctx, run, []string{d.scratchNS}, expires); err != nil {
		t.Fatal(err)
	}
	info, err := vc.Restore(ctx, velero.RestoreOptions{Backup: d.backup, NamespaceMapping: map[string]string{d.source: d.scratchNS}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vc.DeleteRestore(context.Background(), info.Name) })
	d.restore, d.modifier = info.Name, info.ModifierConfigMap
	pod := probePod(firedrillMeta(d.scratchNS, unique("firedrill-probe-http"), run, expires))
	e.create(t, pod)
	d.pod = pod.Name
	dr := &velerov1.DownloadRequest{ObjectMeta: firedrillMeta(sandbox.VeleroNamespace, unique("firedrill-backupcontents"), run, expires),
		Spec: velerov1.DownloadRequestSpec{Target: velerov1.DownloadTarget{Kind: velerov1.DownloadTargetKindBackupContents, Name: d.backup}}}
	e.create(t, dr)
	d.download = dr.Name
	return d
}

// items names what a drill run leaves, as the janitor reports it.
func (d drillRun) items() []string {
	return []string{
		"Backup " + sandbox.VeleroNamespace + "/" + d.backup,
		"ConfigMap " + d.source + "/" + scenarios.CanaryConfigMap,
		"DownloadRequest " + sandbox.VeleroNamespace + "/" + d.download,
		"Namespace " + d.scratchNS,
		"Pod " + d.scratchNS + "/" + d.pod,
		"Restore " + sandbox.VeleroNamespace + "/" + d.restore,
	}
}

func itemsOf(rep *Report, runs ...string) []string {
	var out []string
	for _, it := range rep.Items {
		if slices.Contains(runs, it.Run) && it.Kind != KindWorkDir {
			out = append(out, it.Kind+" "+it.Where())
		}
	}
	slices.Sort(out)
	return out
}

// TestSweepCluster is not parallel: a pass covers the whole cluster.
func TestSweepCluster(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	now := time.Now()
	past, future := now.Add(-time.Minute), now.Add(time.Hour)

	expired := e.drill(t, unique("20260101-000000-exp"), past)
	running := e.drill(t, unique("20260101-000000-run"), future)
	root := t.TempDir()
	crashedRun := unique("20260101-000000-crash")
	crashed := e.drill(t, crashedRun, future)
	crashedDir := makeWorkDir(t, root, crashedRun, deadRunner(t), nil)
	// A restore's modifier ConfigMap whose Restore was never made (a crash between the two).
	orphan := &corev1.ConfigMap{ObjectMeta: firedrillMeta(sandbox.VeleroNamespace, "firedrill-"+expired.run+"-2-isolation", expired.run, past)}
	e.create(t, orphan)

	// Not firedrill's, or not due, whatever the name and annotation: never removed.
	others := e.namespace(t, "others")
	expiredAnn := map[string]string{scratch.AnnotationExpires: scratch.FormatExpiry(past)}
	onlyManaged := firedrillMeta(others, "only-managed", "", past)
	delete(onlyManaged.Labels, scratch.LabelRun)
	restoredCopy := firedrillMeta(others, "restored-canary", expired.run, past)
	restoredCopy.Labels[velerov1.RestoreNameLabel] = "team-restore"
	decoys := []client.Object{
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: others, Name: scenarios.CanaryConfigMap, Annotations: expiredAnn}},
		&corev1.ConfigMap{ObjectMeta: onlyManaged},
		&corev1.ConfigMap{ObjectMeta: restoredCopy},
		probePod(metav1.ObjectMeta{Namespace: others, Name: "firedrill-probe-manifest-x", Annotations: expiredAnn}),
	}
	e.create(t, decoys...)
	// A team's backup, and one firedrill made without deleteAfter: backups to keep.
	vc, err := velero.New(e.sb.RESTConfig(), sandbox.VeleroNamespace)
	if err != nil {
		t.Fatal(err)
	}
	kept := "firedrill-" + expired.run + "-kept"
	if _, err := vc.ForRun(expired.run).Expiring(past).CreateBackup(ctx, kept, scenarios.VeleroCreate{IncludedNamespaces: []string{others}}, nil); err != nil {
		t.Fatal(err)
	}
	team := &velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: sandbox.VeleroNamespace, Name: unique("team"), Annotations: expiredAnn},
		Spec: velerov1.BackupSpec{IncludedNamespaces: []string{others}}}
	e.create(t, team)
	for _, b := range []string{kept, team.Name} {
		if _, err := vc.WaitBackup(ctx, b, nil); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = vc.ForRun(expired.run).DeleteBackup(context.Background(), kept) })

	j, err := New(Config{Kube: e.sb.RESTConfig(), WorkRoot: root, Alive: history.ProcessAlive})
	if err != nil {
		t.Fatal(err)
	}
	want := append(expired.items(), "ConfigMap "+sandbox.VeleroNamespace+"/"+orphan.Name)
	want = append(want, crashed.items()...)
	slices.Sort(want)

	dry, err := j.Sweep(ctx, Options{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := itemsOf(dry, expired.run, running.run, crashed.run); !slices.Equal(got, want) {
		t.Errorf("dry run would remove\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	for _, it := range dry.Items {
		switch it.Run {
		case expired.run:
			if it.Reason != scratch.DueExpired || it.ExpiredAt == nil || it.ExpiredAt.Unix() != past.Unix() {
				t.Errorf("%s %s: %s at %v, want expired at %s", it.Kind, it.Where(), it.Reason, it.ExpiredAt, past)
			}
		case crashed.run:
			if it.Reason != scratch.DueRunnerGone || it.Runner == nil {
				t.Errorf("%s %s: %s, want runner gone with its runner", it.Kind, it.Where(), it.Reason)
			}
		}
	}
	for _, d := range []drillRun{expired, running, crashed} {
		e.assertThere(t, d)
	}

	rep, err := j.Sweep(ctx, Options{WaitInFlight: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := itemsOf(rep, expired.run, running.run, crashed.run); !slices.Equal(got, want) {
		t.Errorf("removed\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	if len(rep.Left) > 0 || len(rep.Errors) > 0 {
		t.Errorf("left %+v, errors %v", rep.Left, rep.Errors)
	}
	for _, d := range []drillRun{expired, crashed} {
		e.assertGone(t, d)
	}
	e.assertThere(t, running)
	assertGone(t, crashedDir)
	if err := e.kube.Get(ctx, client.ObjectKeyFromObject(orphan), &corev1.ConfigMap{}); !apierrors.IsNotFound(err) {
		t.Errorf("orphaned modifier ConfigMap: %v", err)
	}
	for _, o := range append(decoys, team, &velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: sandbox.VeleroNamespace, Name: kept}}) {
		if err := e.kube.Get(ctx, client.ObjectKeyFromObject(o), o); err != nil || o.GetDeletionTimestamp() != nil {
			t.Errorf("%T %s/%s, not the janitor's, is gone or going: %v", o, o.GetNamespace(), o.GetName(), err)
		}
	}

	// Judged as at two hours on, the running drill's objects are due too.
	later, err := j.Sweep(ctx, Options{DryRun: true, AsOf: now.Add(2 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := itemsOf(later, running.run), running.items(); !slices.Equal(got, sortedCopy(want)) {
		t.Errorf("as of two hours on: %v, want %v", got, want)
	}
}

func sortedCopy(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// assertThere fails unless everything d made is there and not being deleted.
func (e *env) assertThere(t *testing.T, d drillRun) {
	t.Helper()
	for _, o := range d.objects() {
		if err := e.kube.Get(context.Background(), client.ObjectKeyFromObject(o), o); err != nil || o.GetDeletionTimestamp() != nil {
			t.Errorf("run %s: %T %s/%s is gone or going: %v", d.run, o, o.GetNamespace(), o.GetName(), err)
		}
	}
}

// assertGone fails unless everything d made is gone, its backup's files in object storage too.
func (e *env) assertGone(t *testing.T, d drillRun) {
	t.Helper()
	ctx := context.Background()
	for _, o := range d.objects() {
		if err := e.kube.Get(ctx, client.ObjectKeyFromObject(o), o); !apierrors.IsNotFound(err) {
			t.Errorf("run %s: %T %s/%s is still there: %v", d.run, o, o.GetNamespace(), o.GetName(), err)
		}
	}
	for _, prefix := range []string{"backups/" + d.backup + "/", "restores/" + d.restore + "/"} {
		keys, err := e.sb.S3().Objects(ctx, prefix)
		if err != nil || len(keys) > 0 {
			t.Errorf("run %s: in object storage under %s: %v %v", d.run, prefix, keys, err)
		}
	}
}

func (d drillRun) objects() []client.Object {
	v := sandbox.VeleroNamespace
	return []client.Object{
		&velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: v, Name: d.backup}},
		&velerov1.Restore{ObjectMeta: metav1.ObjectMeta{Namespace: v, Name: d.restore}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: v, Name: d.modifier}},
		&velerov1.DownloadRequest{ObjectMeta: metav1.ObjectMeta{Namespace: v, Name: d.download}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: d.source, Name: scenarios.CanaryConfigMap}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: d.scratchNS, Name: d.pod}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: d.scratchNS}},
	}
}

// TestRun is not parallel, for the reason TestSweepCluster is not: Run's first pass deletes an
// expired namespace and counts what is left, and it stops with its context.
func TestRun(t *testing.T) {
	e := newEnv(t)
	m := scratch.New(e.cs)
	run := unique("run")
	expired, kept := unique("drill-expired"), unique("drill-kept")
	iso := scratch.Isolation{Quota: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("5")}}
	if err := m.Prepare(context.Background(), run, "shop", []string{expired, kept}, iso, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{expired, kept} {
		t.Cleanup(func() { _ = e.cs.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	}
	if err := m.Extend(context.Background(), run, []string{expired}, time.Now().Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	j, err := New(Config{Kube: e.sb.RESTConfig(), WorkRoot: t.TempDir(), Alive: history.ProcessAlive})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	passes := make(chan int, 100)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		j.Run(ctx, 50*time.Millisecond, slog.New(slog.DiscardHandler), func(n int) { passes <- n })
	}()
	for i := range 2 {
		select {
		case n := <-passes:
			if n < 1 {
				t.Errorf("pass %d: %d scratch namespaces left, want at least %s", i+1, n, kept)
			}
		case <-time.After(2 * time.Minute):
			t.Fatalf("no janitor pass %d within 2m", i+1)
		}
	}
	for name, want := range map[string]bool{expired: false, kept: true} {
		ns, err := e.cs.CoreV1().Namespaces().Get(context.Background(), name, metav1.GetOptions{})
		if there := err == nil && ns.DeletionTimestamp == nil; there != want {
			t.Errorf("namespace %s there: %v, want %v (%v)", name, there, want, err)
		}
	}
	cancel()
	select {
	case <-stopped:
	case <-time.After(time.Minute):
		t.Fatal("Run did not return after its context ended")
	}
}

// A run handed over with RunnerGone (a drill Job that died) has what it made removed at once,
// whatever its expiry, and is forgotten once all of it is gone; Wake starts Run's pass now.
func TestRunnerGoneHandsOverARun(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	run := unique("jobrun")
	ns := &corev1.Namespace{ObjectMeta: firedrillMeta("", "drill-"+run, run, time.Now().Add(24*time.Hour))}
	e.create(t, ns)
	j, err := New(Config{Kube: e.sb.RESTConfig(), WorkRoot: t.TempDir(), Alive: history.ProcessAlive})
	if err != nil {
		t.Fatal(err)
	}
	removed := func(rep *Report) bool {
		return slices.ContainsFunc(rep.Items, func(it Item) bool { return it.Kind == KindNamespace && it.Name == ns.Name })
	}
	rep, err := j.Sweep(ctx, Options{})
	if err != nil || removed(rep) {
		t.Fatalf("a namespace of a live run, expiring tomorrow, was removed (%v)", err)
	}

	passes := make(chan int, 10)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		j.Run(rctx, time.Hour, slog.New(slog.DiscardHandler), func(n int) { passes <- n })
		close(done)
	}()
	t.Cleanup(func() { cancel(); <-done })
	<-passes // the pass at start
	j.RunnerGone(run, drill.RunnerInfo{Host: "pod fd/firedrill-" + run})
	j.Wake()
	select {
	case <-passes:
	case <-time.After(2 * time.Minute):
		t.Fatal("Wake started no pass")
	}
	got, err := e.cs.CoreV1().Namespaces().Get(ctx, ns.Name, metav1.GetOptions{})
	if err == nil && got.DeletionTimestamp == nil {
		t.Errorf("namespace %s of a run whose runner is gone is still there", ns.Name)
	} else if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	if len(j.handedOver()) != 0 {
		t.Errorf("the run is still handed over after all of it was removed: %v", j.handedOver())
	}
}
