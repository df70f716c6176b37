package sandbox

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/firedrill-dev/firedrill/internal/controlplane"
)

// nodeAgentObjects are what Velero's file-system backups need on the real node: node-agent (as
// `velero install --use-node-agent` makes it, from the local image, reading the kubelet's pods
// dir under the sandbox), its service account, the object store's credentials, and the image of
// the restore helper init container.
func (s *Sandbox) nodeAgentObjects(s3 *S3) []client.Object {
	ds := s.nodeAgentDaemonSet()
	return []client.Object{
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: VeleroNamespace, Name: "velero"}},
		&rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "velero"},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: VeleroNamespace, Name: "velero"}},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "cluster-admin"},
		},
		&corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: VeleroNamespace, Name: "cloud-credentials"},
			StringData: map[string]string{"cloud": fmt.Sprintf("[default]\naws_access_key_id=%s\naws_secret_access_key=%s\n", s3.AccessKey, s3.SecretKey)},
		},
		// Velero's restore adds an init container that waits for the volume's data; its image
		// comes from here (velero.io/pod-volume-restore plugin config).
		&corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: VeleroNamespace, Name: "fs-restore-action-config",
				Labels: map[string]string{"velero.io/plugin-config": "", "velero.io/pod-volume-restore": "RestoreItemAction"}},
			Data: map[string]string{"image": VeleroImage},
		},
		ds,
	}
}

// nodeAgentDaemonSet is the DaemonSet `velero install --use-node-agent --privileged-node-agent`
// makes (velero's pkg/install, which this module does not import: it drags in Velero's plugin
// framework), with the local image and the kubelet's root dir under the sandbox.
func (s *Sandbox) nodeAgentDaemonSet() *appsv1.DaemonSet {
	labels := map[string]string{"name": "node-agent", "role": "node-agent", "component": "velero"}
	root := s.nodePaths().kubeletRoot()
	hostToContainer := corev1.MountPropagationHostToContainer
	hostPath := func(name, path string) corev1.Volume {
		return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: path}}}
	}
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: VeleroNamespace, Name: "node-agent", Labels: map[string]string{"component": "velero"}},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"name": "node-agent"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					ServiceAccountName: "velero",
					NodeSelector:       map[string]string{"kubernetes.io/hostname": RealNodeName},
					SecurityContext:    &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](0)},
					Volumes: []corev1.Volume{
						hostPath("host-pods", root+"/pods"),
						hostPath("host-plugins", root+"/plugins"),
						{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
						{Name: "cloud-credentials", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "cloud-credentials", DefaultMode: ptr.To[int32](0o444)}}},
					},
					Containers: []corev1.Container{{
						Name:            "node-agent",
						Image:           VeleroImage,
						ImagePullPolicy: corev1.PullNever,
						Command:         []string{"/velero"},
						Args:            []string{"node-agent", "server"},
						SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true)},
						VolumeMounts: []corev1.VolumeMount{
							{Name: "host-pods", MountPath: "/host_pods", MountPropagation: &hostToContainer},
							{Name: "host-plugins", MountPath: "/var/lib/kubelet/plugins", MountPropagation: &hostToContainer},
							{Name: "scratch", MountPath: "/scratch"},
							{Name: "cloud-credentials", MountPath: "/credentials"},
						},
						Env: []corev1.EnvVar{
							{Name: "NODE_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
							{Name: "VELERO_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
							{Name: "VELERO_SCRATCH_DIR", Value: "/scratch"},
							{Name: "AWS_SHARED_CREDENTIALS_FILE", Value: "/credentials/cloud"},
						},
					}},
				},
			},
		},
	}
}

// waitNodeAgent waits until node-agent's pod runs on the real node: Velero refuses file-system
// backups of pods on a node without one.
func (s *Sandbox) waitNodeAgent(ctx context.Context) error {
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(ctx, s.opts.ReadyTimeout)
	defer cancel()
	for {
		pods, err := s.client.CoreV1().Pods(VeleroNamespace).List(ctx, metav1.ListOptions{LabelSelector: "role=node-agent"})
		if err == nil {
			for _, p := range pods.Items {
				if p.Spec.NodeName == RealNodeName && p.Status.Phase == corev1.PodRunning && podReady(&p) {
					fmt.Fprintf(s.progress, "  %-24s ready in %4.1fs  pod %s/%s\n", "velero node-agent", time.Since(t0).Seconds(), p.Namespace, p.Name)
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			log := s.launcher.LogPath("kubelet")
			return &ComponentError{Component: "velero node-agent", Err: fmt.Errorf("no Ready node-agent pod on %s after %s: %s", RealNodeName, s.opts.ReadyTimeout, describePods(pods)),
				Log: log, LastLines: controlplane.TailFile(log, 0, 10)}
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func describePods(pods *corev1.PodList) string {
	if pods == nil || len(pods.Items) == 0 {
		return "no pods"
	}
	var out string
	for _, p := range pods.Items {
		out += fmt.Sprintf("%s %s", p.Name, p.Status.Phase)
		for _, c := range p.Status.ContainerStatuses {
			if w := c.State.Waiting; w != nil {
				out += fmt.Sprintf(" (%s: %s)", w.Reason, w.Message)
			}
		}
		out += "; "
	}
	return out
}
