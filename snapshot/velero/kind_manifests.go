package velero

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/firedrill-dev/firedrill/internal/velerocrds"
	"github.com/firedrill-dev/firedrill/scenarios"
)

// Images installed into a kind target unless the scenario names others: the versions the sandbox
// runs.
const (
	DefaultVeleroImage    = "velero/velero:v1.18.3"
	DefaultAWSPluginImage = "velero/velero-plugin-for-aws:v1.14.3"
)

// VeleroManifests are the objects that install Velero into an empty cluster (as `velero install`
// does, restricted to what a restore needs: no node agent) with one BackupStorageLocation,
// "default", in ReadOnly mode on the scenario's bucket: the ephemeral cluster restores the source's
// backups and can never write or delete them. credentials is the content of the cloud credentials
// file. CRDs come first, then the namespace and the rest; everything but the CRDs carries
// firedrill's labels for runID.
func VeleroManifests(v scenarios.KindVelero, namespace string, credentials []byte, runID string) ([]client.Object, error) {
	var errs []error
	if v.Provider == "" {
		errs = append(errs, errors.New("velero.provider is required (e.g. aws)"))
	}
	if v.Bucket == "" {
		errs = append(errs, errors.New("velero.bucket is required"))
	}
	if len(credentials) == 0 {
		errs = append(errs, errors.New("velero.credentialsFile is empty or missing"))
	}
	if runID == "" {
		errs = append(errs, errors.New("no run id"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: install velero: %w", ErrUsage, err)
	}
	if namespace == "" {
		namespace = DefaultNamespace
	}
	image := v.Image
	if image == "" {
		image = DefaultVeleroImage
	}
	plugins := v.Plugins
	if len(plugins) == 0 {
		plugins = []string{DefaultAWSPluginImage}
	}
	labels := func(extra map[string]string) map[string]string {
		l := map[string]string{LabelManagedBy: ManagedBy, LabelRun: runID, "component": "velero"}
		for k, v := range extra {
			l[k] = v
		}
		return l
	}
	meta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: labels(nil)}
	}

	crds, err := velerocrds.All()
	if err != nil {
		return nil, fmt.Errorf("install velero: %w", err)
	}
	var objs []client.Object
	for _, crd := range crds {
		objs = append(objs, crd)
	}
	podLabels := map[string]string{"component": "velero", "deploy": "velero"}
	var inits []corev1.Container
	for _, p := range plugins {
		inits = append(inits, corev1.Container{
			Name:  pluginContainerName(p),
			Image: p,
			// Plugin images copy their binary into /target when they start.
			VolumeMounts: []corev1.VolumeMount{{Name: "plugins", MountPath: "/target"}},
		})
	}
	const creds = "/credentials/cloud"
	objs = append(objs,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace, Labels: labels(nil)}},
		&corev1.ServiceAccount{ObjectMeta: meta("velero")},
		&rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "velero-" + namespace, Labels: labels(nil)},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: namespace, Name: "velero"}},
		},
		&corev1.Secret{ObjectMeta: meta("cloud-credentials"), Data: map[string][]byte{"cloud": credentials}},
		&velerov1.BackupStorageLocation{
			ObjectMeta: meta("default"),
			Spec: velerov1.BackupStorageLocationSpec{
				Provider:    v.Provider,
				Default:     true,
				AccessMode:  velerov1.BackupStorageLocationAccessModeReadOnly,
				StorageType: velerov1.StorageType{ObjectStorage: &velerov1.ObjectStorageLocation{Bucket: v.Bucket, Prefix: v.Prefix}},
				Config:      v.Config,
			},
		},
		&appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "velero", Labels: labels(podLabels)},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To[int32](1),
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"deploy": "velero"}},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels(podLabels)},
					Spec: corev1.PodSpec{
						ServiceAccountName: "velero",
						RestartPolicy:      corev1.RestartPolicyAlways,
						InitContainers:     inits,
						Containers: []corev1.Container{{
							Name:    "velero",
							Image:   image,
							Command: []string{"/velero"},
							Args:    []string{"server", "--uploader-type=kopia", "--backup-sync-period=30s"},
							Ports:   []corev1.ContainerPort{{Name: "metrics", ContainerPort: 8085}},
							Env: []corev1.EnvVar{
								{Name: "VELERO_SCRATCH_DIR", Value: "/scratch"},
								{Name: "VELERO_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
								{Name: "LD_LIBRARY_PATH", Value: "/plugins"},
								{Name: "AWS_SHARED_CREDENTIALS_FILE", Value: creds},
								{Name: "GOOGLE_APPLICATION_CREDENTIALS", Value: creds},
								{Name: "AZURE_CREDENTIALS_FILE", Value: creds},
							},
							VolumeMounts: []corev1.VolumeMount{
								{Name: "plugins", MountPath: "/plugins"},
								{Name: "scratch", MountPath: "/scratch"},
								{Name: "cloud-credentials", MountPath: "/credentials"},
							},
						}},
						Volumes: []corev1.Volume{
							{Name: "plugins", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
							{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
							{Name: "cloud-credentials", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "cloud-credentials"}}},
						},
					},
				},
			},
		},
	)
	return objs, nil
}

var notNameChars = regexp.MustCompile(`[^a-z0-9-]+`)

// pluginContainerName derives a container name from an image, as velero install does:
// "velero/velero-plugin-for-aws:v1.14.3" → "velero-velero-plugin-for-aws".
func pluginContainerName(image string) string {
	if i := strings.LastIndexByte(image, '@'); i > 0 {
		image = image[:i]
	}
	if i := strings.LastIndexByte(image, ':'); i > strings.LastIndexByte(image, '/') {
		image = image[:i]
	}
	n := strings.Trim(notNameChars.ReplaceAllString(strings.ToLower(image), "-"), "-")
	return shorten(n, 63)
}
