package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiext "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/firedrill-dev/firedrill/internal/controlplane"
	"github.com/firedrill-dev/firedrill/internal/velerocrds"
)

const (
	// VeleroNamespace is where the sandbox's Velero server and its objects live.
	VeleroNamespace = "velero"
	// BackupStorageLocation is the name of the sandbox's default location.
	BackupStorageLocation = "default"
	s3Bucket              = "velero"
	// The S3 server checks signatures against this region; Velero's AWS plugin must use it too.
	s3Region = "us-east-1"
)

// Scheme knows the built-in types and Velero's, for clients of a sandbox.
func Scheme() *runtime.Scheme {
	sc := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(sc)
	_ = velerov1.AddToScheme(sc)
	return sc
}

func (s *Sandbox) startS3(ctx context.Context) error {
	info := &S3{Region: s3Region, Bucket: s3Bucket, AccessKey: "firedrill" + randomHex(4), SecretKey: randomHex(16)}
	root := filepath.Join(s.opts.Dir, "s3")
	// A bucket of the posix backend is a directory; making it before start saves an S3 call.
	if err := os.MkdirAll(filepath.Join(root, s3Bucket), 0o755); err != nil {
		return err
	}
	// On a real node Velero's data-path pods talk to it, so it listens on the node address.
	host := "127.0.0.1"
	if s.opts.RealNode {
		host = nodeIP
	}
	url := func(port int) string { return "http://" + net.JoinHostPort(host, strconv.Itoa(port)) }
	p, err := s.launch(ctx, controlplane.Component{
		Name:   "versitygw",
		NPorts: 1,
		Host:   host,
		Args: func(p []int) []string {
			return []string{"--access", info.AccessKey, "--secret", info.SecretKey,
				"--port", net.JoinHostPort(host, strconv.Itoa(p[0])), "posix", root}
		},
		Ready: func(ctx context.Context, p []int) error {
			return controlplane.ProbeServing(ctx, url(p[0])+"/")
		},
	})
	if err != nil {
		return err
	}
	info.URL = url(p.Ports()[0])
	s.update(func(st *State) { st.S3 = info })
	return nil
}

func (s *Sandbox) startVelero(ctx context.Context) error {
	t0 := time.Now()
	c, err := client.New(s.rest, client.Options{Scheme: Scheme()})
	if err != nil {
		return err
	}
	if err := s.installVeleroCRDs(ctx); err != nil {
		return &ComponentError{Component: "velero", Err: fmt.Errorf("install CRDs: %w", err)}
	}
	st := s.State()
	dir := filepath.Join(s.opts.Dir, "velero")
	plugins := filepath.Join(dir, "plugins")
	if err := os.MkdirAll(plugins, 0o755); err != nil {
		return err
	}
	// Velero runs every executable in its plugin dir, so the dir holds only the plugin.
	if err := os.Symlink(filepath.Join(s.binDir, "velero-plugin-for-aws"), filepath.Join(plugins, "velero-plugin-for-aws")); err != nil {
		return err
	}
	creds := filepath.Join(dir, "credentials")
	if err := os.WriteFile(creds, fmt.Appendf(nil, "[default]\naws_access_key_id=%s\naws_secret_access_key=%s\n",
		st.S3.AccessKey, st.S3.SecretKey), 0o600); err != nil {
		return err
	}

	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: VeleroNamespace}},
		// Velero's restore looks up its own Deployment; without one every restore ends PartiallyFailed.
		veleroPlaceholder(s.opts.RealNode),
		&velerov1.BackupStorageLocation{
			ObjectMeta: metav1.ObjectMeta{Namespace: VeleroNamespace, Name: BackupStorageLocation},
			Spec: velerov1.BackupStorageLocationSpec{
				Provider:    "aws",
				Default:     true,
				StorageType: velerov1.StorageType{ObjectStorage: &velerov1.ObjectStorageLocation{Bucket: st.S3.Bucket}},
				Config:      map[string]string{"region": st.S3.Region, "s3ForcePathStyle": "true", "s3Url": st.S3.URL},
				AccessMode:  bslAccessMode(s.opts.VeleroReadOnly),
			},
		},
	}
	if s.opts.RealNode {
		objs = append(objs, s.nodeAgentObjects(st.S3)...)
	}
	for _, o := range objs {
		if err := c.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			return &ComponentError{Component: "velero", Err: fmt.Errorf("create %T %s: %w", o, o.GetName(), err)}
		}
	}

	_, err = s.launch(ctx, controlplane.Component{
		Name:   "velero",
		NPorts: 1,
		Args: func(p []int) []string {
			return []string{"server", "--kubeconfig=" + st.Kubeconfig, "--namespace=" + VeleroNamespace,
				"--plugin-dir=" + plugins, "--uploader-type=kopia",
				fmt.Sprintf("--metrics-address=127.0.0.1:%d", p[0]), "--profiler-address=",
				"--backup-sync-period=10s", "--store-validation-frequency=5s", "--terminating-resource-timeout=30s"}
		},
		Env: []string{"KUBECONFIG=" + st.Kubeconfig, "VELERO_NAMESPACE=" + VeleroNamespace, "AWS_SHARED_CREDENTIALS_FILE=" + creds},
		Ready: func(ctx context.Context, _ []int) error {
			var bsl velerov1.BackupStorageLocation
			if err := c.Get(ctx, client.ObjectKey{Namespace: VeleroNamespace, Name: BackupStorageLocation}, &bsl); err != nil {
				return err
			}
			if bsl.Status.Phase != velerov1.BackupStorageLocationPhaseAvailable {
				return fmt.Errorf("BackupStorageLocation %s/%s is %q: %s", VeleroNamespace, BackupStorageLocation, bsl.Status.Phase, bsl.Status.Message)
			}
			return nil
		},
	})
	if err != nil {
		return err
	}
	if s.opts.RealNode {
		if err := s.waitNodeAgent(ctx); err != nil {
			return err
		}
	}
	s.update(func(st *State) { st.VeleroNamespace = VeleroNamespace })
	fmt.Fprintf(s.progress, "  %-24s available after %.1fs\n", "backup location", time.Since(t0).Seconds())
	return nil
}

func (s *Sandbox) installVeleroCRDs(ctx context.Context) error {
	ac, err := apiext.NewForConfig(s.rest)
	if err != nil {
		return err
	}
	crds, err := velerocrds.All()
	if err != nil {
		return err
	}
	for _, crd := range crds {
		if _, err := ac.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, crd, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("%s: %w", crd.Name, err)
		}
	}
	deadline := time.Now().Add(s.opts.ReadyTimeout)
	for _, crd := range crds {
		for {
			got, err := ac.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, crd.Name, metav1.GetOptions{})
			if err == nil && crdEstablished(got) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s not Established after %s", crd.Name, s.opts.ReadyTimeout)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

func crdEstablished(crd *apiextv1.CustomResourceDefinition) bool {
	for _, c := range crd.Status.Conditions {
		if c.Type == apiextv1.Established {
			return c.Status == apiextv1.ConditionTrue
		}
	}
	return false
}

func bslAccessMode(readOnly bool) velerov1.BackupStorageLocationAccessMode {
	if readOnly {
		return velerov1.BackupStorageLocationAccessModeReadOnly
	}
	return velerov1.BackupStorageLocationAccessModeReadWrite
}

// veleroPlaceholder is the Deployment Velero looks itself up by. Its pod template also serves as
// the model of the repository maintenance Jobs Velero starts, which on a real node really run:
// there it names the local image.
func veleroPlaceholder(realNode bool) *appsv1.Deployment {
	img, pull := "velero/velero:v1.18.3", corev1.PullIfNotPresent
	if realNode {
		img, pull = VeleroImage, corev1.PullNever
	}
	labels := map[string]string{"component": "velero", "deploy": "velero"}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: VeleroNamespace, Name: "velero", Labels: labels,
			Annotations: map[string]string{"firedrill.dev/note": "placeholder: the sandbox runs velero server as a local process"}},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](0),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "velero", Image: img, ImagePullPolicy: pull}}},
			},
		},
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(errors.New("crypto/rand failed: " + err.Error()))
	}
	return hex.EncodeToString(b)
}
