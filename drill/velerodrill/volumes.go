package velerodrill

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/internal/probe"
	"github.com/firedrill-dev/firedrill/internal/probepod"
	"github.com/firedrill-dev/firedrill/snapshot/velero"
	"github.com/firedrill-dev/firedrill/verify"
)

func (r *run) probeImage() string {
	if r.opts.ProbeImage != "" {
		return r.opts.ProbeImage
	}
	return DefaultProbeImage
}

// volumeChecks are the scenario's volumeData checks.
func (r *run) volumeChecks() []*verify.VolumeDataCheck {
	var out []*verify.VolumeDataCheck
	for _, c := range r.checks {
		if v, ok := c.(*verify.VolumeDataCheck); ok {
			out = append(out, v)
		}
	}
	return out
}

// manifestTimeout bounds reading one source volume before the backup.
const manifestTimeout = 10 * time.Minute

// takeManifests lists, just before the backup firedrill makes, the files of every persistent
// volume a volumeData check compares, from a short-lived pod that mounts the claim read-only on
// the node of the pod using it. The restored volumes are later compared with these lists. A volume
// that cannot be read this way (a claim only one pod may mount) is noted, not fatal: it is then
// compared with Velero's own record.
func (r *run) takeManifests(ctx context.Context) error {
	checks := r.volumeChecks()
	if len(checks) == 0 {
		return nil
	}
	selected := func(v verify.PodVolume) bool {
		return slices.ContainsFunc(checks, func(c *verify.VolumeDataCheck) bool { return c.Selects(v) })
	}
	for _, ns := range r.spec.Create.IncludedNamespaces {
		pods, err := r.sourceKube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return fmt.Errorf("list the pods of %s to read their volumes: %w", ns, err)
		}
		for _, p := range pods.Items {
			if p.Status.Phase != corev1.PodRunning {
				continue
			}
			for _, vol := range p.Spec.Volumes {
				if vol.PersistentVolumeClaim == nil {
					continue
				}
				v := verify.PodVolume{Namespace: ns, Pod: p.Name, Volume: vol.Name, Claim: vol.PersistentVolumeClaim.ClaimName}
				if !selected(v) {
					continue
				}
				r.rc.Progress.Note(fmt.Sprintf("reading the files of %s (claim %s) before the backup", v.Key(), v.Claim))
				var m probe.ManifestResult
				err := probepod.Result(ctx, r.sourceKube, probepod.Pod{Namespace: ns, Probe: "manifest", RunID: r.rc.ID, Image: r.probeImage(),
					Args: []string{"manifest", "/volume"}, NodeName: p.Spec.NodeName, Claim: v.Claim, MountPath: "/volume", Timeout: manifestTimeout}, &m)
				if err != nil {
					if ctx.Err() != nil {
						return err
					}
					v.ManifestError = err.Error()
					r.rc.Progress.Note("could not read " + v.Key() + ": " + err.Error())
				} else {
					v.Manifest = &m
				}
				r.volumes = append(r.volumes, v)
			}
		}
	}
	return nil
}

// backedUpVolumes joins Velero's PodVolumeBackups of the backup with the volumes seen before it,
// and adds the persistent volumes of the backed-up pods Velero made none for, so that a volumeData
// check can name what the backup left out.
func (r *run) backedUpVolumes(ctx context.Context) ([]drill.VolumeRecord, error) {
	pvbs, err := r.src.PodVolumeBackups(ctx, r.backup.Name)
	if err != nil {
		return nil, err
	}
	byKey := map[string]int{}
	for i, v := range r.volumes {
		byKey[v.Key()] = i
	}
	var out []drill.VolumeRecord
	for _, p := range pvbs {
		out = append(out, volumeRecord(p))
		i, ok := byKey[p.Key()]
		if !ok {
			r.volumes = append(r.volumes, verify.PodVolume{Namespace: p.Namespace, Pod: p.Pod, Volume: p.Volume})
			i = len(r.volumes) - 1
			byKey[p.Key()] = i
		}
		r.volumes[i].Backup = &p
	}
	// The backed-up pods' claims, from the backup's own contents.
	for _, it := range r.items {
		if it.Resource != "pods" || it.Object == nil {
			continue
		}
		vols, _, _ := unstructured.NestedSlice(it.Object.Object, "spec", "volumes")
		for _, raw := range vols {
			vol, _ := raw.(map[string]any)
			pvc, _ := vol["persistentVolumeClaim"].(map[string]any)
			name, _ := vol["name"].(string)
			claim, _ := pvc["claimName"].(string)
			if pvc == nil || name == "" {
				continue
			}
			k := it.Namespace + "/" + it.Name + "/" + name
			if i, ok := byKey[k]; ok {
				if r.volumes[i].Claim == "" {
					r.volumes[i].Claim = claim
				}
				continue
			}
			byKey[k] = len(r.volumes)
			r.volumes = append(r.volumes, verify.PodVolume{Namespace: it.Namespace, Pod: it.Name, Volume: name, Claim: claim})
		}
	}
	slices.SortFunc(r.volumes, func(a, b verify.PodVolume) int { return strings.Compare(a.Key(), b.Key()) })
	return out, nil
}

// restoredVolumes joins Velero's PodVolumeRestores with the backed-up volumes.
func (r *run) restoredVolumes(ctx context.Context, restore string) error {
	pvrs, err := r.dst.PodVolumeRestores(ctx, restore)
	if err != nil {
		return err
	}
	back := map[string]string{}
	for from, to := range r.mapping {
		back[to] = from
	}
	for _, p := range pvrs {
		key := back[p.Namespace] + "/" + p.Pod + "/" + p.Volume
		for i := range r.volumes {
			if r.volumes[i].Key() == key {
				r.volumes[i].Restore = &p
			}
		}
	}
	return nil
}

func volumeRecord(v velero.VolumeCopy) drill.VolumeRecord {
	return drill.VolumeRecord{Name: v.Name, Namespace: v.Namespace, Pod: v.Pod, Volume: v.Volume, Phase: v.Phase, Bytes: v.Bytes, Seconds: v.Seconds}
}
