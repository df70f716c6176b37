package velerodrill_test

// The data a Velero drill proves, on the sandbox's real node: volumes restored by Velero's
// file-system backup (kopia through node-agent), restored software that answers, a copy that
// cannot reach production — and each of the failures Velero itself does not report.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/velerodrill"
	"github.com/firedrill-dev/firedrill/internal/testkit"
	"github.com/firedrill-dev/firedrill/sandbox"
)

// orderShop is the demo's order service in a namespace of its own: a StatefulSet of
// firedrill.local/orders keeping orders in SQLite on a persistent volume, with 42 orders placed,
// and its Service (port 9090 has nothing behind it). excludeVolume opts the volume out of
// Velero's file-system backup.
func orderShop(t *testing.T, sb *sandbox.Sandbox, prefix string, excludeVolume bool) (string, client.Client) {
	t.Helper()
	c, ns := namespace(t, sb, prefix)
	ctx := context.Background()
	labels := map[string]string{"app": "orders"}
	annotations := map[string]string{}
	if excludeVolume {
		annotations["backup.velero.io/backup-volumes-excludes"] = "data"
	}
	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "orders"}, Spec: appsv1.StatefulSetSpec{
		Replicas: ptr.To[int32](1), ServiceName: "orders", Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations}, Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "orders", Image: sandbox.OrdersImage, ImagePullPolicy: corev1.PullNever,
				Args:           []string{"serve", "--db", "/data/orders.db"},
				Ports:          []corev1.ContainerPort{{ContainerPort: 8080}},
				VolumeMounts:   []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: intstr.FromInt32(8080)}}, PeriodSeconds: 2},
			}}}},
		VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Name: "data"}, Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("64Mi")}}}}},
	}}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "orders"}, Spec: corev1.ServiceSpec{
		Selector: labels, Ports: []corev1.ServicePort{{Name: "http", Port: 8080, TargetPort: intstr.FromInt32(8080)},
			{Name: "none", Port: 9090, TargetPort: intstr.FromInt32(9090)}}}}
	for _, o := range []client.Object{sts, svc} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	testkit.Eventually(t, 3*time.Minute, "orders-0 ready", func() error {
		var p corev1.Pod
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns.Name, Name: "orders-0"}, &p); err != nil {
			return err
		}
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("phase %s", p.Status.Phase)
	})
	// Orders placed now, as shoppers would: nothing recreates them on an empty volume.
	if out, err := exec.Command(filepath.Join(sb.BinDir(), "kubectl"), "--kubeconfig", sb.Kubeconfig(), "exec", "-n", ns.Name, "orders-0", "--",
		"/orders", "add", "--db", "/data/orders.db", "--count", "42").CombinedOutput(); err != nil {
		t.Fatalf("place orders: %v: %s", err, out)
	}
	return ns.Name, c
}

// dataScenario backs ns up with Velero's file-system backup and restores it into a scratch
// namespace, proving its data with every data check.
func dataScenario(sb *sandbox.Sandbox, ns string, checks string) string {
	return fmt.Sprintf(`apiVersion: firedrill.dev/v1alpha1
kind: Scenario
metadata: {name: data-%s}
spec:
  timeout: 15m
  source: {kubeconfig: %s}
  backup:
    velero:
      create: {includedNamespaces: [%s], defaultVolumesToFsBackup: true, deleteAfter: true}
  restore:
    scratchNamespace: {}
  checks:
%s`, ns, sb.Kubeconfig(), ns, checks)
}

func runData(t *testing.T, sb *sandbox.Sandbox, yaml string) *drill.Record {
	t.Helper()
	rec, err := (&drill.Runner{WorkRoot: t.TempDir()}).Run(context.Background(), writeScenario(t, yaml),
		velerodrill.New(velerodrill.Options{ProbeImage: sandbox.ProbeImage}))
	if err != nil {
		t.Fatal(err)
	}
	if left := scratchLeft(t, sb, rec.ID); len(left) > 0 {
		t.Errorf("scratch namespaces left: %v", left)
	}
	return rec
}

func check(t *testing.T, rec *drill.Record, name string) drill.CheckRecord {
	t.Helper()
	for _, c := range rec.Checks {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no check %q in %+v", name, rec.Checks)
	return drill.CheckRecord{}
}

// The demo's order service restored from a file-system backup: its volume file by file, its HTTP
// answer, its own tool reading the database, and a copy that production cannot be reached from.
func TestVeleroDrillProvesData(t *testing.T) {
	t.Parallel()
	sb := velero(t)
	ns, _ := orderShop(t, sb, "orders", false)
	rec := runData(t, sb, dataScenario(sb, ns, `    - {name: restored, objectsRestored: {}}
    - {name: ready, workloadsReady: {timeout: 5m}}
    - {name: volume, volumeData: {volumes: [{pod: "orders-*", volume: data}], ignore: ["*-journal"]}}
    - {name: answers, http: {service: orders, port: 8080, path: /orders/stats, expect: {bodyPattern: '"count":42,'}}}
    - {name: port, tcp: {service: orders, port: 8080}}
    - {name: count, exec: {pod: orders-0, command: [/orders, count, --db, /data/orders.db], expect: {outputPattern: '^42$'}}}
    - {name: isolated, isolation: {service: orders, port: 8080}}
`))
	if rec.Result != drill.Passed {
		t.Fatalf("result %s: %s\nchecks %+v", rec.Result, rec.Message, rec.Checks)
	}
	v := check(t, rec, "volume").Evidence["volumes"]
	b, _ := json.Marshal(v)
	var vols []struct {
		Compared        string `json:"compared"`
		Files           int    `json:"files"`
		Digest          string `json:"digest"`
		SourceDigest    string `json:"sourceDigest"`
		PodVolumeBackup string `json:"podVolumeBackup"`
	}
	if err := json.Unmarshal(b, &vols); err != nil || len(vols) != 1 || vols[0].Compared != "manifest" || vols[0].Files == 0 ||
		vols[0].Digest != vols[0].SourceDigest || vols[0].PodVolumeBackup == "" {
		t.Errorf("volumeData evidence %s (%v)", b, err)
	}
	if len(rec.Backup.Volumes) != 1 || rec.Backup.Volumes[0].Bytes == 0 || rec.Target == nil || len(rec.Target.Volumes) != 1 {
		t.Errorf("pod volume copies in the record: backup %+v target %+v", rec.Backup.Volumes, rec.Target)
	}
	if h := check(t, rec, "answers").Evidence; h["status"] != 200 || !strings.Contains(fmt.Sprint(h["body"]), `"count":42`) {
		t.Errorf("http evidence %v", h)
	}
	if iso := check(t, rec, "isolated"); !strings.Contains(iso.Message, "isolated") || iso.Evidence["copyAnswered"] != true {
		t.Errorf("isolation %s: %v", iso.Message, iso.Evidence)
	}
}

// One drill whose backup Velero calls Completed and whose restore it calls Completed, and every
// check of it fails for a real reason: a volume left out of the file-system backup comes back
// empty (the restored service starts a new, empty database on it), the service answers with no
// orders, a pod needs a Secret the restore left out,
// another an image the node does not have, and a Job exits 1.
func TestVeleroDrillFailuresVeleroDoesNotReport(t *testing.T) {
	t.Parallel()
	sb := velero(t)
	ns, c := orderShop(t, sb, "broken", true)
	ctx := context.Background()
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "api-key"}, StringData: map[string]string{"key": "not-restored"}}
	needsSecret := deploymentOf(ns, "needs-secret", corev1.Container{Name: "app", Image: sandbox.ProbeImage, ImagePullPolicy: corev1.PullNever, Args: []string{"sleep"},
		Env: []corev1.EnvVar{{Name: "KEY", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "api-key"}, Key: "key"}}}}})
	// An image the node does not have, as a DR cluster may lack a team's private image.
	noImage := deploymentOf(ns, "no-image", corev1.Container{Name: "app", Image: "firedrill.local/missing:1", ImagePullPolicy: corev1.PullNever})
	for _, o := range []client.Object{secret, needsSecret, noImage} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	rec := runData(t, sb, strings.Replace(dataScenario(sb, ns, `    - {name: ready, workloadsReady: {timeout: 3m}}
    - {name: volume, volumeData: {volumes: [{pod: "orders-*", volume: data}]}}
    - {name: answers, http: {service: orders, port: 8080, path: /orders/stats, expect: {bodyPattern: '"count":42,'}, timeout: 1m}}
    - {name: closed port, tcp: {service: orders, port: 9090, timeout: 20s}}
    - {name: count, exec: {pod: orders-0, command: [/orders, count, --db, /data/orders.db], expect: {outputPattern: '^42$'}}}
    - {name: job fails, job: {image: "firedrill.local/probe:1", command: [/firedrill-probe, manifest, /no/such/dir], timeout: 2m}}
`), "scratchNamespace: {}", `scratchNamespace:
      isolation:
        excludeResources: [secrets]
  cleanup: {policy: Always}`, 1))
	if rec.Result != drill.Failed {
		t.Fatalf("result %s: %s\nchecks %+v", rec.Result, rec.Message, rec.Checks)
	}
	for name, want := range map[string][]string{
		"ready":       {"pod needs-secret-", `CreateContainerConfigError: secret "api-key" not found`, "pod no-image-", "ErrImageNeverPull"},
		"volume":      {"orders.db different", "no PodVolumeBackup"},
		"answers":     {"does not match", `"count":0`},
		"closed port": {"no connection to"},
		"count":       {"exited 0 but its output does not match", "0"},
		"job fails":   {"failed"},
	} {
		c := check(t, rec, name)
		if c.Result != drill.Failed {
			t.Errorf("check %s: %s %s, want failed", name, c.Result, c.Message)
			continue
		}
		for _, w := range want {
			if !strings.Contains(c.Message, w) {
				t.Errorf("check %s: message lacks %q: %s", name, w, c.Message)
			}
		}
	}
	if logs := fmt.Sprint(check(t, rec, "job fails").Evidence); !strings.Contains(logs, "no/such/dir") {
		t.Errorf("the failing job's log tail is not evidence: %s", logs)
	}
}

func deploymentOf(ns, name string, c corev1.Container) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: appsv1.DeploymentSpec{
		Replicas: ptr.To[int32](1), Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{c}}}}}
}

// A backup that lacks an object the source held before it started fails the drill naming it,
// though its restore brings back everything the backup holds; an object made after the backup
// does not count against it.
func TestVeleroDrillBackupLacksWhatTheSourceHeld(t *testing.T) {
	t.Parallel()
	sb := velero(t)
	ns, c := shop(t, sb, "lacks")
	ctx := context.Background()
	if err := c.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "victim"}, Data: map[string]string{"k": "v"}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // a second apart: creation times have seconds
	b := backupOf(t, sb, c, ns)
	// The backup's tarball in the object store loses the ConfigMap: Velero still lists the backup
	// Completed, and its restore brings back all the rest.
	dropFromTarball(t, filepath.Join(sb.Dir(), "s3", sb.S3().Bucket, "backups", b.Name, b.Name+".tar.gz"), "/configmaps/", "/victim.json")
	if err := c.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "late"}, Data: map[string]string{"k": "v"}}); err != nil {
		t.Fatal(err)
	}
	rec := runData(t, sb, fmt.Sprintf(`apiVersion: firedrill.dev/v1alpha1
kind: Scenario
metadata: {name: lacks-%s}
spec:
  source: {kubeconfig: %s}
  backup: {velero: {name: %s}}
  restore: {scratchNamespace: {}}
  checks: [{name: restored, objectsRestored: {}}]
`, ns, sb.Kubeconfig(), b.Name))
	c0 := check(t, rec, "restored")
	if rec.Result != drill.Failed || c0.Result != drill.Failed || !strings.Contains(c0.Message, "configmaps "+ns+"/victim") || !strings.Contains(c0.Message, "the backup lacks 1 of") {
		t.Fatalf("result %s, check %s: %s", rec.Result, c0.Result, c0.Message)
	}
	if strings.Contains(c0.Message, "late") {
		t.Errorf("an object made after the backup was counted against it: %s", c0.Message)
	}
}

// dropFromTarball rewrites a backup tarball without the entries whose names hold all of parts.
func dropFromTarball(t *testing.T, path string, parts ...string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	tw := tar.NewWriter(zw)
	tr := tar.NewReader(zr)
	dropped := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		all := true
		for _, p := range parts {
			all = all && strings.Contains(h.Name, p)
		}
		if all {
			dropped++
			continue
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	if dropped == 0 {
		t.Fatalf("no entry of %s holds %v", path, parts)
	}
	tw.Close()
	zw.Close()
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// A file-system backup whose data in the object store was changed after the backup never passes:
// kopia finds its content does not match (the restore fails), or what comes back differs.
func TestVeleroDrillTamperedVolumeDataNeverPasses(t *testing.T) {
	t.Parallel()
	sb := velero(t)
	ns, c := orderShop(t, sb, "tampered", false)
	b := &velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: sandbox.VeleroNamespace, Name: "t-" + ns},
		Spec: velerov1.BackupSpec{IncludedNamespaces: []string{ns}, DefaultVolumesToFsBackup: ptr.To(true)}}
	if err := c.Create(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 3*time.Minute, "backup completes", func() error {
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(b), b); err != nil {
			return err
		}
		if b.Status.Phase != velerov1.BackupPhaseCompleted {
			return fmt.Errorf("phase %q", b.Status.Phase)
		}
		return nil
	})
	// kopia keeps file contents in pack blobs ("p…") of the namespace's repository.
	repo := filepath.Join(sb.Dir(), "s3", sb.S3().Bucket, "kopia", ns)
	changed := 0
	filepath.WalkDir(repo, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasPrefix(d.Name(), "p") {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil || len(data) < 64 {
			return err
		}
		for i := len(data) / 3; i < len(data)-16; i += 4096 {
			data[i] ^= 0xff
		}
		changed++
		return os.WriteFile(path, data, 0o644)
	})
	if changed == 0 {
		t.Fatalf("no kopia pack blobs under %s", repo)
	}
	rec := runData(t, sb, fmt.Sprintf(`apiVersion: firedrill.dev/v1alpha1
kind: Scenario
metadata: {name: tampered-%s}
spec:
  timeout: 15m
  source: {kubeconfig: %s}
  backup: {velero: {name: %s}}
  restore: {scratchNamespace: {}}
  checks:
    - {name: volume, volumeData: {volumes: [{pod: "orders-*", volume: data}]}}
    - {name: count, exec: {pod: orders-0, command: [/orders, count, --db, /data/orders.db], expect: {outputPattern: '^42$'}}}
`, ns, sb.Kubeconfig(), b.Name))
	if rec.Result == drill.Passed {
		t.Fatalf("a backup whose data was changed in storage passed: %+v", rec.Checks)
	}
	t.Logf("tampered data: %s: %s", rec.Result, rec.Message)
}
