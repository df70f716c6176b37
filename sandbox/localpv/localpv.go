// Package localpv is a minimal dynamic provisioner of `local` PersistentVolumes on one node: the
// sandbox's default StorageClass on its real node. A `local` volume lives under the kubelet's pods
// directory when mounted, so Velero's file-system backup reads it (it skips `hostPath` volumes).
package localpv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Config says where volumes go and which StorageClasses are served.
type Config struct {
	// Dir on the node holds one directory per volume. Required.
	Dir string
	// Node is the node a volume of an Immediate class is pinned to; a WaitForFirstConsumer
	// class's volume goes to the node the scheduler selected for the claim's first pod. Required.
	Node string
	// Provisioner is the name StorageClasses name in .provisioner. Required.
	Provisioner string
}

// Provisioner provisions and deletes volumes.
type Provisioner struct {
	c   kubernetes.Interface
	cfg Config
}

// annProvisionedBy marks the volumes this provisioner made (the same key as the in-tree one).
const annProvisionedBy = "pv.kubernetes.io/provisioned-by"

// New returns a provisioner; it does nothing until Run or Sync.
func New(c kubernetes.Interface, cfg Config) (*Provisioner, error) {
	if cfg.Dir == "" || cfg.Node == "" || cfg.Provisioner == "" {
		return nil, errors.New("localpv: Dir, Node and Provisioner are required")
	}
	return &Provisioner{c: c, cfg: cfg}, nil
}

// Run calls Sync every interval until ctx ends, logging what it did and what failed.
func (p *Provisioner) Run(ctx context.Context, interval time.Duration, log io.Writer) {
	for {
		for _, line := range p.Sync(ctx) {
			fmt.Fprintf(log, "%s %s\n", time.Now().UTC().Format(time.RFC3339), line)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

// Sync provisions a volume for every pending claim of a served class and deletes every released
// volume it made whose policy is Delete. It returns a line per action or failure.
func (p *Provisioner) Sync(ctx context.Context) []string {
	var log []string
	classes, err := p.c.StorageV1().StorageClasses().List(ctx, metav1.ListOptions{})
	if err != nil {
		return []string{"list StorageClasses: " + err.Error()}
	}
	served := map[string]*storagev1.StorageClass{}
	var dflt string
	for i := range classes.Items {
		sc := &classes.Items[i]
		if sc.Provisioner != p.cfg.Provisioner {
			continue
		}
		served[sc.Name] = sc
		if sc.Annotations["storageclass.kubernetes.io/is-default-class"] == "true" {
			dflt = sc.Name
		}
	}
	claims, err := p.c.CoreV1().PersistentVolumeClaims("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return []string{"list PersistentVolumeClaims: " + err.Error()}
	}
	for i := range claims.Items {
		pvc := &claims.Items[i]
		class := dflt
		if pvc.Spec.StorageClassName != nil {
			class = *pvc.Spec.StorageClassName
		}
		sc := served[class]
		if sc == nil || pvc.Status.Phase != corev1.ClaimPending || pvc.Spec.VolumeName != "" || pvc.DeletionTimestamp != nil {
			continue
		}
		if sc.VolumeBindingMode != nil && *sc.VolumeBindingMode == storagev1.VolumeBindingWaitForFirstConsumer &&
			pvc.Annotations["volume.kubernetes.io/selected-node"] == "" {
			continue
		}
		if line, err := p.provision(ctx, pvc, sc); err != nil {
			log = append(log, fmt.Sprintf("provision %s/%s: %v", pvc.Namespace, pvc.Name, err))
		} else if line != "" {
			log = append(log, line)
		}
	}
	pvs, err := p.c.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return append(log, "list PersistentVolumes: "+err.Error())
	}
	for i := range pvs.Items {
		pv := &pvs.Items[i]
		if pv.Annotations[annProvisionedBy] != p.cfg.Provisioner || pv.Status.Phase != corev1.VolumeReleased ||
			pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete {
			continue
		}
		if err := p.delete(ctx, pv); err != nil {
			log = append(log, fmt.Sprintf("delete %s: %v", pv.Name, err))
		} else {
			log = append(log, "deleted "+pv.Name)
		}
	}
	return log
}

func (p *Provisioner) provision(ctx context.Context, pvc *corev1.PersistentVolumeClaim, sc *storagev1.StorageClass) (string, error) {
	name := "pvc-" + string(pvc.UID)
	if _, err := p.c.CoreV1().PersistentVolumes().Get(ctx, name, metav1.GetOptions{}); err == nil {
		return "", nil // made already; the PV controller binds it
	}
	path := filepath.Join(p.cfg.Dir, name)
	if err := os.MkdirAll(path, 0o777); err != nil {
		return "", err
	}
	// Any uid in a pod may write its volume, as on a fresh cloud disk formatted for it.
	if err := os.Chmod(path, 0o777); err != nil {
		return "", err
	}
	size := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	if size.IsZero() {
		size = resource.MustParse("1Gi")
	}
	node := p.cfg.Node
	if sel := pvc.Annotations["volume.kubernetes.io/selected-node"]; sel != "" {
		node = sel
	}
	reclaim := corev1.PersistentVolumeReclaimDelete
	if sc.ReclaimPolicy != nil {
		reclaim = *sc.ReclaimPolicy
	}
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{annProvisionedBy: p.cfg.Provisioner}},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: size},
			AccessModes:                   pvc.Spec.AccessModes,
			PersistentVolumeReclaimPolicy: reclaim,
			StorageClassName:              sc.Name,
			VolumeMode:                    pvc.Spec.VolumeMode,
			ClaimRef: &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1",
				Namespace: pvc.Namespace, Name: pvc.Name, UID: pvc.UID},
			PersistentVolumeSource: corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: path}},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "kubernetes.io/hostname", Operator: corev1.NodeSelectorOpIn, Values: []string{node}}},
			}}}},
		},
	}
	if len(pv.Spec.AccessModes) == 0 {
		pv.Spec.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	}
	if _, err := p.c.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", err
	}
	return fmt.Sprintf("provisioned %s (%s) for %s/%s at %s", name, size.String(), pvc.Namespace, pvc.Name, path), nil
}

func (p *Provisioner) delete(ctx context.Context, pv *corev1.PersistentVolume) error {
	if pv.Spec.Local != nil && filepath.Dir(pv.Spec.Local.Path) == filepath.Clean(p.cfg.Dir) {
		if err := os.RemoveAll(pv.Spec.Local.Path); err != nil {
			return err
		}
	}
	err := p.c.CoreV1().PersistentVolumes().Delete(ctx, pv.Name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
