package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/history"
	"github.com/firedrill-dev/firedrill/internal/testkit"
	"github.com/firedrill-dev/firedrill/janitor"
	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/firedrill-dev/firedrill/sandbox/sandboxtest"
	"github.com/firedrill-dev/firedrill/scenarios"
	"github.com/firedrill-dev/firedrill/scratch"
	"github.com/firedrill-dev/firedrill/snapshot/etcd"
)

// crashEnv is the crash matrix's own sandbox: `firedrill janitor` covers the whole cluster, and
// must not judge the other tests' drills.
type crashEnv struct {
	sb   *sandbox.Sandbox
	cs   kubernetes.Interface
	kube client.Client
	env  []string // of every firedrill run here: the sandbox, a private history and TMPDIR
	tmp  string
}

// TestCrashMatrix SIGKILLs `firedrill run` at each step of a Velero drill and of an etcd drill,
// then runs `firedrill janitor` once, as a user would after the crash, on the same machine: it
// must leave nothing of the drill in the cluster, in object storage or on disk, and remove
// nothing of anyone else's, nor of a drill that still runs.
func TestCrashMatrix(t *testing.T) {
	t.Parallel()
	needSandbox(t)
	sb := sandboxtest.Start(t, sandbox.Options{Velero: true})
	kube, err := client.New(sb.RESTConfig(), client.Options{Scheme: sandbox.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	e := &crashEnv{sb: sb, cs: kubernetes.NewForConfigOrDie(sb.RESTConfig()), kube: kube, tmp: tmp,
		env: []string{"KUBECONFIG=" + sb.Kubeconfig(), "FIREDRILL_HISTORY=" + filepath.Join(t.TempDir(), "history.db"),
			"TMPDIR=" + tmp, "FIREDRILL_BIN_DIR=" + sb.BinDir()}}
	keep := e.othersThings(t)

	t.Run("velero", func(t *testing.T) {
		// The preflight only reads, and takes a tenth of a second: here it talks to the API server
		// through a slow link, and is killed while its ping of Velero (a DownloadRequest) is out.
		slow := e.slowKubeconfig(t, 64<<10)
		for _, c := range []struct {
			step string
			env  []string
			at   func(e *crashEnv, run string) bool // when to kill, once the step's line is out
		}{
			{drill.StepPreflight, []string{"KUBECONFIG=" + slow}, func(e *crashEnv, run string) bool { return e.labelled(&velerov1.DownloadRequestList{}, run) }},
			{drill.StepBackup, nil, func(e *crashEnv, run string) bool { return e.exists(&velerov1.Backup{}, "velero", "firedrill-"+run) }},
			{drill.StepRestore, nil, func(e *crashEnv, run string) bool { return e.exists(&velerov1.Restore{}, "velero", "firedrill-"+run) }},
			{drill.StepVerify, nil, func(e *crashEnv, run string) bool { return e.labelled(&corev1.PodList{}, run) }},
		} {
			t.Run(c.step, func(t *testing.T) {
				source := e.shop(t)
				file := writeFile(t, t.TempDir(), "velero.yaml", fmt.Sprintf(`apiVersion: firedrill.dev/v1alpha1
kind: Scenario
metadata: {name: crash-velero-%s}
spec:
  timeout: 10m
  backup: {velero: {create: {includedNamespaces: [%s], deleteAfter: true}}}
  restore: {scratchNamespace: {}}
  checks:
    - {http: {service: web, timeout: 5m}}
    - {canary: {}}
`, c.step, source))
				run := e.crash(t, file, c.step, c.env, c.at)
				rep := e.janitor(t, run)
				e.assertNothingOf(t, run, rep)
			})
		}
	})

	t.Run("etcd", func(t *testing.T) {
		// 4 MiB behind a 512 KiB/s link: the snapshot the backup step takes streams for 8 s.
		ec, err := etcd.NewClient(sb.EtcdEndpoints(), nil, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 40 {
			if _, err := ec.Put(context.Background(), fmt.Sprintf("/crash/blob-%02d", i), strings.Repeat("x", 100<<10)); err != nil {
				t.Fatal(err)
			}
		}
		ec.Close()
		slow := slowProxy(t, strings.TrimPrefix(sb.EtcdEndpoints()[0], "http://"), 512<<10)
		// The preflight reaches etcd through a link slow enough to kill it there: 100 B/s, so
		// that its few small answers take seconds (at 1 KiB/s one took 0.2 s under load).
		slower := slowProxy(t, strings.TrimPrefix(sb.EtcdEndpoints()[0], "http://"), 100)
		for _, c := range []struct {
			step      string
			endpoints []string
			at        func(e *crashEnv, run string) bool
		}{
			{drill.StepPreflight, []string{slower}, nil},
			// The canary is written; the snapshot streams into the work directory.
			{drill.StepBackup, []string{slow}, func(e *crashEnv, run string) bool { return e.workFile(run, ".*.db.*") }},
			// While the scratch kube-apiserver starts: its process is a child of firedrill's.
			{drill.StepRestore, sb.EtcdEndpoints(), func(e *crashEnv, run string) bool { return len(testkit.ProcessesUnder(e.workDir(run))) > 0 }},
			{drill.StepVerify, sb.EtcdEndpoints(), nil},
		} {
			t.Run(c.step, func(t *testing.T) {
				name := "crash-etcd-" + c.step
				file := writeFile(t, t.TempDir(), "etcd.yaml", takeScenario(name, c.endpoints))
				run := e.crash(t, file, c.step, nil, c.at)
				rep := e.janitor(t, run)
				e.assertNothingOf(t, run, rep)
				if c.step != drill.StepPreflight {
					e.assertCanaryExpires(t, name, run)
				}
			})
		}
	})
	keep(t)
}

// shop is a namespace to back up: configuration and a web Service the http check asks (on
// kwok's nodes its probe pod never finishes: the verify step is still on it when killed).
func (e *crashEnv) shop(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "shop-"}}
	e.create(t, ns)
	sel := map[string]string{"app": "web"}
	e.create(t, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "settings"}, Data: map[string]string{"k": "v"}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "web"}, Spec: corev1.ServiceSpec{Selector: sel, Ports: []corev1.ServicePort{{Port: 80}}}})
	return ns.Name
}

func (e *crashEnv) create(t *testing.T, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := e.kube.Create(context.Background(), o); err != nil {
			t.Fatalf("create %T %s: %v", o, o.GetName(), err)
		}
		t.Cleanup(func() { _ = e.kube.Delete(context.Background(), o) })
	}
}

func (e *crashEnv) exists(o client.Object, ns, name string) bool {
	return e.kube.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, o) == nil
}

// labelled reports whether an object of the list's kind carries the run's label.
func (e *crashEnv) labelled(l client.ObjectList, run string) bool {
	if err := e.kube.List(context.Background(), l, client.MatchingLabels{scratch.LabelRun: run}); err != nil {
		return false
	}
	return apimeta.LenList(l) > 0
}

// slowKubeconfig is the sandbox's kubeconfig with its API server behind a link of rate bytes/s.
func (e *crashEnv) slowKubeconfig(t *testing.T, rate int) string {
	t.Helper()
	b, err := os.ReadFile(e.sb.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	server := e.sb.State().APIServer
	proxy := "https://" + strings.TrimPrefix(slowProxy(t, strings.TrimPrefix(server, "https://"), rate), "http://")
	if !bytes.Contains(b, []byte(server)) {
		t.Fatalf("kubeconfig %s does not name %s", e.sb.Kubeconfig(), server)
	}
	return writeFile(t, t.TempDir(), "kubeconfig", strings.ReplaceAll(string(b), server, proxy))
}

// workDir is the run's work directory in TMPDIR; "" until it exists.
func (e *crashEnv) workDir(run string) string {
	m, _ := filepath.Glob(filepath.Join(e.tmp, drill.WorkDirPrefix+run+"-*"))
	if len(m) == 0 {
		return ""
	}
	return m[0]
}

// workFile reports whether the run's work directory holds a file matching pattern besides its
// owner file.
func (e *crashEnv) workFile(run, pattern string) bool {
	dir := e.workDir(run)
	m, _ := filepath.Glob(filepath.Join(dir, pattern))
	m = slices.DeleteFunc(m, func(p string) bool { return strings.Contains(filepath.Base(p), drill.OwnerFile) })
	return dir != "" && len(m) > 0
}

// crash starts `firedrill run file` (with env added), waits for the step's line on stderr and then for at, and
// kills it with SIGKILL: no cleanup runs. It returns the run's id, from its work directory's
// owner file.
func (e *crashEnv) crash(t *testing.T, file, step string, env []string, at func(*crashEnv, string) bool) string {
	t.Helper()
	before, _ := filepath.Glob(filepath.Join(e.tmp, drill.WorkDirPrefix+"*"))
	cmd := exec.Command(firedrillBin, "run", file)
	cmd.Env = append(append(os.Environ(), e.env...), env...)
	stderr := &testkit.Buffer{}
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	var run string
	testkit.EventuallyTrue(t, 2*time.Minute, "the run's work directory with its owner file", func() bool {
		now, _ := filepath.Glob(filepath.Join(e.tmp, drill.WorkDirPrefix+"*"))
		for _, d := range now {
			if slices.Contains(before, d) {
				continue
			}
			if o, err := drill.ReadOwner(d); err == nil {
				run = o.Run
				return true
			}
		}
		return false
	})
	deadline := time.Now().Add(5 * time.Minute)
	for !strings.Contains(stderr.String(), "step "+step) || (at != nil && !at(e, run)) {
		if time.Now().After(deadline) || strings.Contains(stderr.String(), "step "+drill.StepCleanup) {
			t.Fatalf("run %s never got to the kill point in step %s:\n%s", run, step, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed = true
	err := cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("run %s did not die by SIGKILL: %v\n%s", run, err, stderr.String())
	}
	if got := lastStep(stderr.String()); got != step {
		t.Errorf("run %s was killed in step %s, not %s: the step ended before the kill point was seen\n%s", run, got, step, stderr.String())
	}
	t.Logf("killed run %s in step %s; its last lines:\n%s", run, step, lastLines(stderr.String(), 3))
	// The scratch kube-apiserver is a child started with Pdeathsig: the kernel kills it too.
	if dir := e.workDir(run); dir != "" {
		testkit.EventuallyTrue(t, 30*time.Second, "no process of the killed run left", func() bool { return len(testkit.ProcessesUnder(dir)) == 0 })
	}
	return run
}

// lastStep is the step of the last "step NAME" progress line.
func lastStep(stderr string) string {
	step := ""
	for _, l := range strings.Split(stderr, "\n") {
		if _, name, ok := strings.Cut(l, "] step "); ok {
			step = strings.TrimSpace(name)
		}
	}
	return step
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// janitor runs `firedrill janitor` as the user would after the crash. First, from elsewhere (an
// empty work root: the runner cannot be seen), it must find nothing of the run due — its objects
// are not expired yet, and a crashed drill there looks like a running one — and with --now two
// hours on, every object of the run in the cluster. Then the janitor on this machine removes it
// all: the work directory shows its runner gone.
func (e *crashEnv) janitor(t *testing.T, run string) *janitor.Report {
	t.Helper()
	elsewhere := t.TempDir()
	dry := e.janitorJSON(t, "--dry-run", "--work-root", elsewhere)
	if got := itemsOfRun(dry.Items, run); len(got) > 0 {
		t.Errorf("from elsewhere, before its expiry, the janitor would remove %v of run %s", got, run)
	}
	later := e.janitorJSON(t, "--dry-run", "--work-root", elsewhere, "--now", "+2h")
	for _, it := range later.Items {
		if it.Run == run && it.Reason != scratch.DueExpired {
			t.Errorf("%s %s: %s, want expired two hours on", it.Kind, it.Where(), it.Reason)
		}
	}
	rep := e.janitorJSON(t)
	if len(rep.Left) > 0 || len(rep.Errors) > 0 {
		t.Errorf("janitor left %+v, errors %v", rep.Left, rep.Errors)
	}
	var cluster []string
	for _, it := range rep.Items {
		if it.Run != run {
			t.Errorf("janitor removed %s %s of run %s, not of the crashed run %s", it.Kind, it.Where(), it.Run, run)
			continue
		}
		if it.Reason != scratch.DueRunnerGone || it.Runner == nil {
			t.Errorf("%s %s: %s, want runner gone", it.Kind, it.Where(), it.Reason)
		}
		if it.Kind != janitor.KindWorkDir {
			cluster = append(cluster, it.Kind+" "+it.Where())
		}
	}
	slices.Sort(cluster)
	expected := itemsOfRun(later.Items, run)
	if !slices.Equal(cluster, expected) {
		t.Errorf("removed\n  %s\nbut two hours on, from elsewhere, the janitor would have found\n  %s", strings.Join(cluster, "\n  "), strings.Join(expected, "\n  "))
	}
	t.Logf("janitor removed: %s", strings.Join(itemsOfRun(rep.Items, run), ", "))
	return rep
}

func (e *crashEnv) janitorJSON(t *testing.T, args ...string) *janitor.Report {
	t.Helper()
	r := firedrill(t, e.env, append([]string{"janitor", "-o", "json"}, args...)...)
	if r.code != 0 {
		t.Fatalf("janitor %v: exit %d\n%s%s", args, r.code, r.stdout, r.stderr)
	}
	var rep janitor.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("janitor -o json: %v\n%s", err, r.stdout)
	}
	return &rep
}

func itemsOfRun(items []janitor.Item, run string) []string {
	var out []string
	for _, it := range items {
		if it.Run == run && it.Kind != janitor.KindWorkDir {
			out = append(out, it.Kind+" "+it.Where())
		}
	}
	slices.Sort(out)
	return out
}

// assertNothingOf fails if anything carrying the run's label is left in the cluster, its backup
// or restore in object storage, or its work directory or a process of it on disk.
func (e *crashEnv) assertNothingOf(t *testing.T, run string, rep *janitor.Report) {
	t.Helper()
	ctx := context.Background()
	sel := client.MatchingLabels{scratch.LabelRun: run}
	for _, l := range []client.ObjectList{&corev1.NamespaceList{}, &corev1.ConfigMapList{}, &corev1.PodList{}, &velerov1.RestoreList{},
		&velerov1.BackupList{}, &velerov1.DownloadRequestList{}, &velerov1.DeleteBackupRequestList{}} {
		if err := e.kube.List(ctx, l, sel); err != nil {
			t.Fatal(err)
		}
		objs, err := apimeta.ExtractList(l)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			m, _ := apimeta.Accessor(o)
			t.Errorf("left in the cluster: %T %s/%s", o, m.GetNamespace(), m.GetName())
		}
	}
	for _, prefix := range []string{"backups/firedrill-" + run + "/", "restores/firedrill-" + run + "/"} {
		if keys, err := e.sb.S3().Objects(ctx, prefix); err != nil || len(keys) > 0 {
			t.Errorf("left in object storage under %s: %v %v", prefix, keys, err)
		}
	}
	if dir := e.workDir(run); dir != "" {
		t.Errorf("work directory left: %s", dir)
	}
	removedDir := slices.ContainsFunc(rep.Items, func(it janitor.Item) bool { return it.Kind == janitor.KindWorkDir })
	if !removedDir {
		t.Errorf("the janitor did not report the work directory of run %s", run)
	}
	if procs := testkit.ProcessesUnder(filepath.Join(e.tmp, drill.WorkDirPrefix+run)); len(procs) > 0 {
		t.Errorf("processes of run %s left: %v", run, procs)
	}
}

// assertCanaryExpires: the canary key a killed etcd drill wrote stays in the live etcd, where
// no janitor reaches, only until the run's expiry: it is on a lease.
func (e *crashEnv) assertCanaryExpires(t *testing.T, scenario, run string) {
	t.Helper()
	c, err := etcd.NewClient(e.sb.EtcdEndpoints(), nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	r, err := c.Get(ctx, scenarios.CanaryKeyPrefix+scenario)
	if err != nil || len(r.Kvs) != 1 || !strings.Contains(string(r.Kvs[0].Value), run) {
		t.Fatalf("canary of run %s: %v %v", run, r, err)
	}
	ttl, err := c.TimeToLive(ctx, clientv3.LeaseID(r.Kvs[0].Lease))
	// spec.timeout 30m (default) + cleanup 5m + the hour to spare
	if max := int64((35*time.Minute + drill.ExpiryMargin).Seconds()) + 1; err != nil || ttl.TTL <= 0 || ttl.TTL > max {
		t.Errorf("canary key %s: lease TTL %v (%v), want it to end by the run's expiry, within %ds", r.Kvs[0].Key, ttl, err, max)
	}
}

// othersThings makes what the janitor must never remove, and returns the check that it did not:
// objects and a work directory that are not firedrill's (whatever their names and annotations),
// and those of a drill still running here (labelled, unexpired, its runner alive).
func (e *crashEnv) othersThings(t *testing.T) func(*testing.T) {
	ctx := context.Background()
	past := map[string]string{scratch.AnnotationExpires: "2000-01-01T00:00:00Z"}
	team := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "team-", Annotations: past}}
	onlyRun := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "drill-", Annotations: past, Labels: map[string]string{scratch.LabelRun: "x"}}}
	e.create(t, team, onlyRun)
	liveRun := drill.NewRunID(time.Now())
	live := "drill-" + liveRun
	iso := scratch.Isolation{Quota: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("1")}}
	if err := scratch.New(e.cs).Prepare(ctx, liveRun, "running", []string{live}, iso, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.cs.CoreV1().Namespaces().Delete(context.Background(), live, metav1.DeleteOptions{}) })
	liveMeta := metav1.ObjectMeta{Namespace: team.Name, Name: scenarios.CanaryConfigMap,
		Labels:      map[string]string{scratch.LabelManagedBy: scratch.ManagedBy, scratch.LabelRun: liveRun},
		Annotations: map[string]string{scratch.AnnotationExpires: scratch.FormatExpiry(time.Now().Add(time.Hour))}}
	objs := []client.Object{
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: onlyRun.Name, Name: scenarios.CanaryConfigMap, Annotations: past}},
		&corev1.ConfigMap{ObjectMeta: liveMeta},
		&velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: sandbox.VeleroNamespace, GenerateName: "team-", Annotations: past},
			Spec: velerov1.BackupSpec{IncludedNamespaces: []string{team.Name}}},
	}
	e.create(t, objs...)
	objs = append(objs, team, onlyRun, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: live}})

	me := history.CurrentRunner()
	running, err := os.MkdirTemp(e.tmp, drill.WorkDirPrefix+liveRun+"-")
	if err != nil {
		t.Fatal(err)
	}
	if err := drill.WriteOwner(running, drill.Owner{Run: liveRun, Runner: me, StartedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	noOwner := filepath.Join(e.tmp, drill.WorkDirPrefix+"20000101-000000-000000-x")
	if err := os.Mkdir(noOwner, 0o700); err != nil {
		t.Fatal(err)
	}
	return func(t *testing.T) {
		for _, o := range objs {
			if err := e.kube.Get(ctx, client.ObjectKeyFromObject(o), o); err != nil || o.GetDeletionTimestamp() != nil {
				t.Errorf("%T %s/%s, not the janitor's, is gone or going: %v", o, o.GetNamespace(), o.GetName(), err)
			}
		}
		for _, d := range []string{running, noOwner} {
			if _, err := os.Stat(d); err != nil {
				t.Errorf("%s, not the janitor's: %v", d, err)
			}
		}
	}
}
