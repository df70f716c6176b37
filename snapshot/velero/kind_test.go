package velero

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/firedrill-dev/firedrill/scenarios"
)

func kindVelero(t *testing.T) scenarios.KindVelero {
	creds := filepath.Join(t.TempDir(), "credentials")
	if err := os.WriteFile(creds, []byte("[default]\naws_access_key_id=AK\naws_secret_access_key=SK\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return scenarios.KindVelero{Provider: "aws", Bucket: "backups", Prefix: "prod",
		Config:          map[string]string{"region": "us-east-1", "s3Url": "http://minio.example:9000", "s3ForcePathStyle": "true"},
		CredentialsFile: creds}
}

func TestVeleroManifests(t *testing.T) {
	t.Parallel()
	objs, err := VeleroManifests(kindVelero(t), "", []byte("[default]\n"), "run1")
	if err != nil {
		t.Fatal(err)
	}
	var (
		crds   int
		dep    *appsv1.Deployment
		bsl    *velerov1.BackupStorageLocation
		secret *corev1.Secret
		crb    *rbacv1.ClusterRoleBinding
		sawNS  bool
	)
	for i, o := range objs {
		switch o := o.(type) {
		case *apiextv1.CustomResourceDefinition:
			crds++
			if sawNS || i != crds-1 {
				t.Errorf("CRD %s after other objects", o.Name)
			}
			continue
		case *corev1.Namespace:
			sawNS = true
		case *appsv1.Deployment:
			dep = o
		case *velerov1.BackupStorageLocation:
			bsl = o
		case *corev1.Secret:
			secret = o
		case *rbacv1.ClusterRoleBinding:
			crb = o
		}
		if o.GetLabels()[LabelManagedBy] != ManagedBy || o.GetLabels()[LabelRun] != "run1" {
			t.Errorf("%T %s labels %v", o, o.GetName(), o.GetLabels())
		}
		if _, cluster := o.(*rbacv1.ClusterRoleBinding); !cluster && o.GetName() != "velero" && o.GetNamespace() != "velero" {
			t.Errorf("%T %s in namespace %q", o, o.GetName(), o.GetNamespace())
		}
	}
	if crds < 10 || dep == nil || bsl == nil || secret == nil || crb == nil || !sawNS {
		t.Fatalf("crds %d, deployment %v, bsl %v, secret %v, binding %v, namespace %v", crds, dep != nil, bsl != nil, secret != nil, crb != nil, sawNS)
	}
	if bsl.Spec.AccessMode != velerov1.BackupStorageLocationAccessModeReadOnly || !bsl.Spec.Default || bsl.Spec.Provider != "aws" ||
		bsl.Spec.ObjectStorage.Bucket != "backups" || bsl.Spec.ObjectStorage.Prefix != "prod" || bsl.Spec.Config["s3Url"] != "http://minio.example:9000" {
		t.Errorf("bsl %+v", bsl.Spec)
	}
	if string(secret.Data["cloud"]) != "[default]\n" {
		t.Errorf("secret %v", secret.Data)
	}
	pod := dep.Spec.Template.Spec
	if pod.Containers[0].Image != DefaultVeleroImage || len(pod.InitContainers) != 1 || pod.InitContainers[0].Image != DefaultAWSPluginImage ||
		pod.InitContainers[0].Name != "velero-velero-plugin-for-aws" || pod.ServiceAccountName != "velero" {
		t.Errorf("pod %+v", pod)
	}
	env := map[string]string{}
	for _, e := range pod.Containers[0].Env {
		env[e.Name] = e.Value
	}
	if env["AWS_SHARED_CREDENTIALS_FILE"] != "/credentials/cloud" || env["LD_LIBRARY_PATH"] != "/plugins" {
		t.Errorf("env %v", env)
	}
	if crb.RoleRef.Name != "cluster-admin" || crb.Subjects[0].Namespace != "velero" {
		t.Errorf("binding %+v", crb)
	}

	v := kindVelero(t)
	v.Image, v.Plugins = "registry.example/velero:v1", []string{"registry.example:5000/plug/aws@sha256:abc", "gcr.io/p/gcp:v2"}
	objs, err = VeleroManifests(v, "dr", []byte("x"), "run1")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if d, ok := o.(*appsv1.Deployment); ok {
			var names []string
			for _, c := range d.Spec.Template.Spec.InitContainers {
				names = append(names, c.Name)
			}
			if d.Namespace != "dr" || d.Spec.Template.Spec.Containers[0].Image != v.Image || strings.Join(names, ",") != "registry-example-5000-plug-aws,gcr-io-p-gcp" {
				t.Errorf("custom images: %s %v", d.Namespace, names)
			}
		}
	}
}

func TestVeleroManifestsSayWhatIsMissing(t *testing.T) {
	t.Parallel()
	_, err := VeleroManifests(scenarios.KindVelero{}, "", nil, "")
	if !errors.Is(err, ErrUsage) {
		t.Fatalf("got %v", err)
	}
	for _, want := range []string{"velero.provider is required", "velero.bucket is required", "velero.credentialsFile", "no run id"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}

// TestVeleroManifestsApply applies the manifests to a real API server (in a namespace of its own,
// beside the sandbox's Velero): every object passes the server's validation and the CRDs' schemas.
func TestVeleroManifestsApply(t *testing.T) {
	t.Parallel()
	e := sharedEnv(t)
	ns := "kindvelero-" + e.runID
	ctx := ctxFor(t, 2*time.Minute)
	if err := InstallVelero(ctx, e.sb.RESTConfig(), kindVelero(t), ns, e.runID); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = e.kube.Delete(context.Background(), &corev1.Namespace{ObjectMeta: metaName(ns)})
		_ = e.kube.Delete(context.Background(), &rbacv1.ClusterRoleBinding{ObjectMeta: metaName("velero-" + ns)})
	})
	var bsl velerov1.BackupStorageLocation
	if err := e.kube.Get(ctx, client.ObjectKey{Namespace: ns, Name: "default"}, &bsl); err != nil {
		t.Fatal(err)
	}
	if bsl.Spec.AccessMode != velerov1.BackupStorageLocationAccessModeReadOnly {
		t.Errorf("bsl %+v", bsl.Spec)
	}
	var dep appsv1.Deployment
	if err := e.kube.Get(ctx, client.ObjectKey{Namespace: ns, Name: "velero"}, &dep); err != nil {
		t.Fatal(err)
	}
	// Applying again changes nothing and fails nothing.
	if err := InstallVelero(ctx, e.sb.RESTConfig(), kindVelero(t), ns, e.runID); err != nil {
		t.Fatal(err)
	}
}

func metaName(name string) metav1.ObjectMeta { return metav1.ObjectMeta{Name: name} }

func TestKindClusterName(t *testing.T) {
	t.Parallel()
	if n, err := KindClusterName(scenarios.KindTarget{}, "20260101-abc"); err != nil || n != "firedrill-20260101-abc" {
		t.Errorf("default: %q %v", n, err)
	}
	if n, err := KindClusterName(scenarios.KindTarget{Name: "drill"}, "x"); err != nil || n != "drill" {
		t.Errorf("named: %q %v", n, err)
	}
	if n, err := KindClusterName(scenarios.KindTarget{}, strings.Repeat("a", 80)); err != nil || len(n) > 49 {
		t.Errorf("long run id: %q %v", n, err)
	}
	for _, bad := range []string{"Drill", "drill_1", strings.Repeat("d", 50), "-drill"} {
		if _, err := KindClusterName(scenarios.KindTarget{Name: bad}, "x"); !errors.Is(err, ErrUsage) {
			t.Errorf("%q accepted: %v", bad, err)
		}
	}
}

// fakePath makes a directory holding the given shell scripts, and a probe that only looks there.
func fakePath(t *testing.T, scripts map[string]string) EngineProbe {
	dir := t.TempDir()
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	p := SystemEngineProbe()
	p.LookPath = func(file string) (string, error) {
		path := filepath.Join(dir, file)
		if _, err := os.Stat(path); err != nil {
			return "", err
		}
		return path, nil
	}
	return p
}

func TestFindContainerEngine(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for name, tc := range map[string]struct {
		scripts map[string]string
		want    string
		err     string
	}{
		"none":                      {nil, "", "needs a container engine (docker or podman): none found on PATH"},
		"docker down":               {map[string]string{"docker": "echo 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?' >&2; exit 1"}, "", "docker found at "},
		"docker works":              {map[string]string{"docker": "echo 27.0.1"}, "docker", ""},
		"podman only":               {map[string]string{"podman": "echo 5.0"}, "podman", ""},
		"docker down, podman works": {map[string]string{"docker": "exit 1", "podman": "echo 5.0"}, "podman", ""},
	} {
		got, err := FindContainerEngine(ctx, fakePath(t, tc.scripts))
		if got != tc.want {
			t.Errorf("%s: engine %q, want %q (%v)", name, got, tc.want, err)
		}
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrNoContainerEngine)) {
			t.Errorf("%s: error %v, want one saying %q", name, err, tc.err)
		}
		if name == "docker down" && err != nil && !strings.Contains(err.Error(), "but its daemon is not reachable (docker info: Cannot connect to the Docker daemon") {
			t.Errorf("docker down: %v", err)
		}
	}
}

// TestKindTargetEndToEnd needs Docker or Podman: it creates a kind cluster, installs Velero into
// it and deletes it again. These machines have no container engine, so it skips saying why.
func TestKindTargetEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("creates a kind cluster: skipped under -short")
	}
	ctx := ctxFor(t, 15*time.Minute)
	if _, err := FindContainerEngine(ctx, SystemEngineProbe()); err != nil {
		t.Skip(err.Error())
	}
	k, err := CreateKindCluster(ctx, KindOptions{RunID: "t" + randHex(4), Dir: t.TempDir()})
	if k != nil {
		t.Cleanup(func() {
			if err := k.Delete(); err != nil {
				t.Error(err)
			}
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	kc, err := client.New(k.RESTConfig(), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var nodes corev1.NodeList
	if err := kc.List(ctx, &nodes); err != nil || len(nodes.Items) == 0 {
		t.Fatalf("nodes of the kind cluster: %v", err)
	}
}
