package localpv_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/firedrill-dev/firedrill/sandbox/localpv"
)

func TestProvisionsLocalVolumesOnTheSelectedNodeAndDeletesReleasedOnes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	wffc := storagev1.VolumeBindingWaitForFirstConsumer
	c := fake.NewClientset(
		&storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "standard",
			Annotations: map[string]string{"storageclass.kubernetes.io/is-default-class": "true"}},
			Provisioner: "firedrill.dev/local", VolumeBindingMode: &wffc},
		&storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "other"}, Provisioner: "example.com/csi"},
		pvc("waiting", nil, ""),                   // default class, no pod scheduled yet: not yet
		pvc("scheduled", nil, "node-b"),           // default class, pod on node-b
		pvc("foreign", ptr.To("other"), "node-a"), // another provisioner's
	)
	p, err := localpv.New(c, localpv.Config{Dir: dir, Node: "node-a", Provisioner: "firedrill.dev/local"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	log := p.Sync(ctx)
	pvs, _ := c.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	if len(pvs.Items) != 1 {
		t.Fatalf("%d volumes, want 1 (for ns/scheduled): %v", len(pvs.Items), log)
	}
	pv := pvs.Items[0]
	if pv.Spec.Local == nil || pv.Spec.ClaimRef.Name != "scheduled" || pv.Spec.StorageClassName != "standard" ||
		pv.Spec.NodeAffinity.Required.NodeSelectorTerms[0].MatchExpressions[0].Values[0] != "node-b" ||
		pv.Spec.Capacity.Storage().String() != "2Gi" {
		t.Errorf("volume %+v", pv.Spec)
	}
	if st, err := os.Stat(pv.Spec.Local.Path); err != nil || !st.IsDir() || filepath.Dir(pv.Spec.Local.Path) != dir {
		t.Fatalf("volume dir %s: %v", pv.Spec.Local.Path, err)
	}
	// A second pass makes nothing new.
	p.Sync(ctx)
	if pvs, _ := c.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{}); len(pvs.Items) != 1 {
		t.Fatalf("second sync: %d volumes", len(pvs.Items))
	}
	// Released with policy Delete: directory and object go.
	pv.Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimDelete
	pv.Status.Phase = corev1.VolumeReleased
	if _, err := c.CoreV1().PersistentVolumes().Update(ctx, &pv, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	p.Sync(ctx)
	if _, err := os.Stat(pv.Spec.Local.Path); !os.IsNotExist(err) {
		t.Errorf("released volume's dir still there: %v", err)
	}
	if pvs, _ := c.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{}); len(pvs.Items) != 0 {
		t.Errorf("released volume not deleted")
	}
}

func pvc(name string, class *string, node string) *corev1.PersistentVolumeClaim {
	c := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID("uid-" + name)},
		Spec: corev1.PersistentVolumeClaimSpec{
			StorageClassName: class,
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("2Gi")}},
		},
		Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending},
	}
	if node != "" {
		c.Annotations = map[string]string{"volume.kubernetes.io/selected-node": node}
	}
	return c
}
