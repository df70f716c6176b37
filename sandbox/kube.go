package sandbox

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/firedrill-dev/firedrill/internal/controlplane"
)

func probeDefaultServiceAccount(ctx context.Context, c kubernetes.Interface) error {
	_, err := c.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
	return err
}

// createNodes registers the kwok nodes and waits until kwok reports each Ready.
func (s *Sandbox) createNodes(ctx context.Context) error {
	t0 := time.Now()
	nodes := s.client.CoreV1().Nodes()
	names := make([]string, s.opts.Nodes)
	for i := range names {
		names[i] = fmt.Sprintf("kwok-node-%d", i)
		n := fakeNode(names[i], s.opts.RealNode)
		if _, err := nodes.Create(ctx, n, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return &ComponentError{Component: "kwok", Err: fmt.Errorf("create node %s: %w", names[i], err)}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.ReadyTimeout)
	defer cancel()
	for _, name := range names {
		for {
			n, err := nodes.Get(ctx, name, metav1.GetOptions{})
			if err == nil && nodeReady(n) {
				break
			}
			select {
			case <-ctx.Done():
				if errors.Is(ctx.Err(), context.DeadlineExceeded) {
					return &ComponentError{Component: "kwok", Err: fmt.Errorf("node %s not Ready after %s", name, s.opts.ReadyTimeout),
						Log: s.launcher.LogPath("kwok"), LastLines: controlplane.TailFile(s.launcher.LogPath("kwok"), 0, 15)}
				}
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	fmt.Fprintf(s.progress, "  %-24s ready in %4.1fs  %s\n", fmt.Sprintf("%d kwok node(s)", len(names)), time.Since(t0).Seconds(), strings.Join(names, ","))
	return nil
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// FakeNodeTaint keeps pods off kwok's nodes beside a real node: a pod there would "run" without a
// container, and a check of it would pass on nothing. Pods meant for a fake node tolerate it and
// select the label type=kwok.
var FakeNodeTaint = corev1.Taint{Key: "kwok.x-k8s.io/node", Value: "fake", Effect: corev1.TaintEffectNoSchedule}

// fakeNode is a Node that kwok manages (the annotation) with room for a demo and a few drills;
// tainted when a real node runs beside it.
func fakeNode(name string, tainted bool) *corev1.Node {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   resource.MustParse("250"),
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Annotations: map[string]string{
				"kwok.x-k8s.io/node":           "fake",
				"node.alpha.kubernetes.io/ttl": "0",
			},
			Labels: map[string]string{
				"kubernetes.io/hostname": name,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
				"type":                   "kwok",
			},
		},
		Spec:   nodeSpec(tainted),
		Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity},
	}
}

func nodeSpec(tainted bool) corev1.NodeSpec {
	if !tainted {
		return corev1.NodeSpec{}
	}
	return corev1.NodeSpec{Taints: []corev1.Taint{FakeNodeTaint}}
}

// StorageClass is the sandbox's default StorageClass, so PersistentVolumeClaims bind without a
// CSI driver. On a real node it makes `local` PersistentVolumes in a directory of the node
// (firedrill-local-provisioner), whose data Velero's file-system backup reads; on kwok nodes the
// controller-manager's hostPath provisioner serves it.
const StorageClass = "standard"

// localProvisioner is the provisioner name of StorageClass on a real node.
const localProvisioner = "firedrill.dev/local"

func createStorageClass(ctx context.Context, c kubernetes.Interface, realNode bool) error {
	sc := &storagev1.StorageClass{
		ObjectMeta: metav1.ObjectMeta{Name: StorageClass,
			Annotations: map[string]string{"storageclass.kubernetes.io/is-default-class": "true"}},
		Provisioner: "kubernetes.io/host-path",
	}
	if realNode {
		sc.Provisioner = localProvisioner
		sc.ReclaimPolicy = ptr.To(corev1.PersistentVolumeReclaimDelete)
		// A local volume belongs to one node: the one its first pod is scheduled to.
		sc.VolumeBindingMode = ptr.To(storagev1.VolumeBindingWaitForFirstConsumer)
	}
	_, err := c.StorageV1().StorageClasses().Create(ctx, sc, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}
