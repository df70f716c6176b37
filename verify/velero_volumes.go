package verify

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/firedrill-dev/firedrill/internal/probe"
	"github.com/firedrill-dev/firedrill/internal/probepod"
	"github.com/firedrill-dev/firedrill/scenarios"
)

// VolumeDataCheck compares the files of each restored pod volume with the backed-up ones: with
// the manifest firedrill took just before a backup it made, file by file (path, size, SHA-256);
// otherwise with the bytes Velero's PodVolumeBackup recorded. A volume Velero left out of its
// file-system backup comes back empty, which Velero reports as a Completed restore: here it fails,
// by name.
type VolumeDataCheck struct {
	checkName
	spec scenarios.VolumeDataCheck
}

// NewVolumeDataCheck builds a volumeData check; the timeout defaults to 10m.
func NewVolumeDataCheck(name string, spec scenarios.VolumeDataCheck) (*VolumeDataCheck, error) {
	for _, g := range append(append([]string(nil), spec.Ignore...), volumeRefGlobs(spec.Volumes)...) {
		if _, err := filepath.Match(g, ""); err != nil {
			return nil, fmt.Errorf("volumeData: %q is not a glob: %w", g, err)
		}
	}
	spec.Timeout.Duration = orDuration(spec.Timeout.Duration, scenarios.DefaultVolumeDataTimeout)
	return &VolumeDataCheck{checkName: newCheckName(name, scenarios.CheckVolumeData), spec: spec}, nil
}

func volumeRefGlobs(refs []scenarios.VolumeRef) []string {
	var out []string
	for _, r := range refs {
		if r.Pod != "" {
			out = append(out, r.Pod)
		}
	}
	return out
}

// Selects says whether the check compares volume v: firedrill takes manifests of these before a
// backup it makes.
func (c *VolumeDataCheck) Selects(v PodVolume) bool {
	if len(c.spec.Volumes) == 0 {
		return true
	}
	for _, r := range c.spec.Volumes {
		if r.Namespace != "" && r.Namespace != v.Namespace || r.Volume != v.Volume {
			continue
		}
		if ok, _ := filepath.Match(r.Pod, v.Pod); r.Pod == "" || ok {
			return true
		}
	}
	return false
}

// volumeResult is the evidence of one volume.
type volumeResult struct {
	Volume   string `json:"volume"` // namespace/pod/volume, as backed up
	Restored string `json:"restoredInto"`
	Claim    string `json:"claim,omitempty"`
	// Compared says against what: "manifest" (file by file), "bytes" (Velero's record), "nonEmpty".
	Compared         string `json:"compared"`
	Files            int    `json:"files"`
	Bytes            int64  `json:"bytes"`
	Digest           string `json:"digest,omitempty"`
	SourceFiles      int    `json:"sourceFiles,omitempty"`
	SourceBytes      int64  `json:"sourceBytes,omitempty"`
	SourceDigest     string `json:"sourceDigest,omitempty"`
	Missing          int    `json:"missing,omitempty"`
	Extra            int    `json:"extra,omitempty"`
	Different        int    `json:"different,omitempty"`
	PodVolumeBackup  string `json:"podVolumeBackup,omitempty"`
	PodVolumeRestore string `json:"podVolumeRestore,omitempty"`
	Result           string `json:"result"`
	Message          string `json:"message"`
}

// Run reads every selected restored volume through a read-only probe pod and compares it.
func (c *VolumeDataCheck) Run(ctx context.Context, t *VeleroTarget) Outcome {
	ev := map[string]any{}
	if len(c.spec.Ignore) > 0 {
		ev["ignore"] = c.spec.Ignore
	}
	if t.Cluster == nil {
		return noTarget(ev)
	}
	var vols []PodVolume
	for _, v := range t.Volumes {
		if c.Selects(v) {
			vols = append(vols, v)
		}
	}
	if len(vols) == 0 {
		return failedOutcome(ev, "nothing to compare: the backed-up namespaces have no pod volume%s: a volumeData check that compares nothing proves nothing", c.selection())
	}
	ctx, cancel := context.WithTimeout(ctx, c.spec.Timeout.Duration)
	defer cancel()
	results := make([]volumeResult, 0, len(vols))
	var failed, errored []string
	var files, bytes int64
	for _, v := range vols {
		r := c.compare(ctx, t, v)
		results = append(results, r)
		files, bytes = files+int64(r.Files), bytes+r.Bytes
		switch Status(r.Result) {
		case StatusFailed:
			failed = append(failed, r.Volume+": "+r.Message)
		case StatusError:
			errored = append(errored, r.Volume+": "+r.Message)
		}
	}
	ev["volumes"], ev["files"], ev["bytes"] = results, files, bytes
	switch {
	case len(failed) > 0:
		return failedOutcome(ev, "%d of %d volumes did not come back as backed up: %s", len(failed), len(vols), strings.Join(failed, "; "))
	case len(errored) > 0:
		return errorOutcome(ev, "%d of %d volumes could not be compared: %s", len(errored), len(vols), strings.Join(errored, "; "))
	}
	var how []string
	for _, r := range results {
		how = append(how, r.Volume+" ("+r.Message+")")
	}
	return passedOutcome(ev, "%d volumes came back, %d files, %d bytes: %s", len(vols), files, bytes, strings.Join(how, "; "))
}

func (c *VolumeDataCheck) selection() string {
	if len(c.spec.Volumes) == 0 {
		return ""
	}
	var refs []string
	for _, r := range c.spec.Volumes {
		refs = append(refs, strings.Trim(r.Namespace+"/"+r.Pod+"/"+r.Volume, "/"))
	}
	return " matching " + strings.Join(refs, ", ")
}

// compare reads one restored volume and judges it.
func (c *VolumeDataCheck) compare(ctx context.Context, t *VeleroTarget, v PodVolume) volumeResult {
	ns := mapNamespace(t, v.Namespace)
	r := volumeResult{Volume: v.Key(), Restored: ns + "/" + v.Pod + "/" + v.Volume, Claim: v.Claim}
	if v.Backup != nil {
		r.PodVolumeBackup = v.Backup.Name
	}
	if v.Restore != nil {
		r.PodVolumeRestore = v.Restore.Name
	}
	judge := func(s Status, format string, args ...any) volumeResult {
		r.Result, r.Message = string(s), fmt.Sprintf(format, args...)
		return r
	}
	if v.Backup != nil && v.Backup.Phase != "Completed" {
		return judge(StatusFailed, "Velero's file-system backup %s ended %s: %s", v.Backup.Name, v.Backup.Phase, v.Backup.Message)
	}
	if v.Restore != nil && v.Restore.Phase != "Completed" {
		return judge(StatusFailed, "Velero's file-system restore %s ended %s: %s", v.Restore.Name, v.Restore.Phase, v.Restore.Message)
	}
	got, err := c.read(ctx, t, ns, v)
	if err != nil {
		if errors.Is(err, errNotRestored) {
			return judge(StatusFailed, "%v", err)
		}
		return judge(StatusError, "read the restored volume: %v", err)
	}
	// Velero's file-system restore leaves a marker directory, .velero/<restore uid>, in every volume
	// it restores: not data of the application (a source volume restored once has one too).
	ignore := append([]string{veleroRestoreMarker}, c.spec.Ignore...)
	restored := filterManifest(got, ignore)
	r.Files, r.Bytes, r.Digest = len(restored.Files), restored.TotalBytes, restored.Digest
	noBackup := ""
	if v.Backup == nil {
		noBackup = "; Velero made no file-system backup of it (no PodVolumeBackup: not opted in with backup.velero.io/backup-volumes, or opted out with backup.velero.io/backup-volumes-excludes)"
	}
	switch {
	case v.Manifest != nil:
		src := filterManifest(v.Manifest, ignore)
		r.Compared, r.SourceFiles, r.SourceBytes, r.SourceDigest = "manifest", len(src.Files), src.TotalBytes, src.Digest
		d := diffManifests(src, restored)
		r.Missing, r.Extra, r.Different = d.missing, d.extra, d.different
		if d.first != "" {
			empty := ""
			if len(restored.Files) == 0 {
				empty = "the restored volume is empty; "
			}
			return judge(StatusFailed, "%s%d of %d files missing, %d different, %d extra; first: %s%s", empty, d.missing, len(src.Files), d.different, d.extra, d.first, noBackup)
		}
		return judge(StatusPassed, "%d files, %d bytes identical to the manifest taken before the backup, digest %s", r.Files, r.Bytes, short(r.Digest))
	case v.Backup != nil:
		r.Compared, r.SourceBytes = "bytes", v.Backup.Bytes
		if restored.TotalBytes != v.Backup.Bytes {
			return judge(StatusFailed, "the restored volume holds %d bytes in %d files; Velero's backup %s recorded %d bytes", restored.TotalBytes, len(restored.Files), v.Backup.Name, v.Backup.Bytes)
		}
		return judge(StatusPassed, "%d files, %d bytes, as many bytes as Velero's backup %s recorded (firedrill did not make the backup, so there is no file manifest to compare)", r.Files, r.Bytes, v.Backup.Name)
	}
	r.Compared = "nonEmpty"
	if len(restored.Files) == 0 {
		return judge(StatusFailed, "the restored volume is empty%s", noBackup)
	}
	return judge(StatusPassed, "%d files, %d bytes; nothing recorded to compare them with%s", r.Files, r.Bytes, noBackup)
}

var errNotRestored = errors.New("not restored")

// veleroRestoreMarker is the directory Velero's file-system restore writes into a restored volume.
const veleroRestoreMarker = ".velero"

// read takes the manifest of a restored volume from a probe pod that mounts its claim read-only,
// on the node of the restored pod that uses it.
func (c *VolumeDataCheck) read(ctx context.Context, t *VeleroTarget, ns string, v PodVolume) (*probe.ManifestResult, error) {
	kube := t.Cluster.Kube
	claim, node := v.Claim, ""
	pod, err := kube.CoreV1().Pods(ns).Get(ctx, v.Pod, metav1.GetOptions{})
	switch {
	case err == nil:
		node = pod.Spec.NodeName
		claim = ""
		for _, vol := range pod.Spec.Volumes {
			if vol.Name != v.Volume {
				continue
			}
			if vol.PersistentVolumeClaim == nil {
				return nil, fmt.Errorf("volume %s of pod %s/%s is %s, not a PersistentVolumeClaim: firedrill reads restored claims only", v.Volume, ns, v.Pod, volumeKind(vol))
			}
			claim = vol.PersistentVolumeClaim.ClaimName
		}
		if claim == "" {
			return nil, fmt.Errorf("%w: the restored pod %s/%s has no volume %s", errNotRestored, ns, v.Pod, v.Volume)
		}
	case apierrors.IsNotFound(err) && claim != "":
		// The pod was not restored (a controller's pod, recreated under another name): its claim was.
	case apierrors.IsNotFound(err):
		return nil, fmt.Errorf("%w: pod %s/%s is not in the restored copy", errNotRestored, ns, v.Pod)
	default:
		return nil, err
	}
	if _, err := kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, claim, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("%w: claim %s/%s is not in the restored copy", errNotRestored, ns, claim)
	}
	var m probe.ManifestResult
	err = runProbe(ctx, kube, t, probepod.Pod{Namespace: ns, Probe: "manifest", Args: []string{"manifest", "/volume"},
		NodeName: node, Claim: claim, MountPath: "/volume", Timeout: c.spec.Timeout.Duration}, &m)
	if err != nil {
		return nil, err
	}
	return &m, nil
}

func volumeKind(v corev1.Volume) string {
	switch {
	case v.EmptyDir != nil:
		return "an emptyDir"
	case v.HostPath != nil:
		return "a hostPath"
	case v.ConfigMap != nil, v.Secret != nil, v.Projected != nil, v.DownwardAPI != nil:
		return "generated from API objects"
	}
	return "another kind of volume"
}

// filterManifest leaves out the files that match an ignore glob, by path or by base name.
func filterManifest(m *probe.ManifestResult, ignore []string) *probe.ManifestResult {
	if len(ignore) == 0 {
		return m
	}
	out := &probe.ManifestResult{}
	for _, f := range m.Files {
		if ignored(f.Path, ignore) {
			continue
		}
		out.Files = append(out.Files, f)
	}
	rehash(out)
	return out
}

func ignored(path string, globs []string) bool {
	for _, g := range globs {
		if ok, _ := filepath.Match(g, path); ok {
			return true
		}
		if ok, _ := filepath.Match(g, filepath.Base(path)); ok {
			return true
		}
		if strings.HasPrefix(path, strings.TrimSuffix(g, "/")+"/") {
			return true
		}
	}
	return false
}

// rehash recomputes a manifest's total and digest after filtering, as the probe computes them.
func rehash(m *probe.ManifestResult) {
	r := probe.ManifestOf(m.Files)
	m.TotalBytes, m.Digest = r.TotalBytes, r.Digest
}

type manifestDiff struct {
	missing, extra, different int
	first                     string
}

// diffManifests compares two manifests, both sorted by path.
func diffManifests(src, got *probe.ManifestResult) manifestDiff {
	var d manifestDiff
	note := func(s string) {
		if d.first == "" {
			d.first = s
		}
	}
	i, j := 0, 0
	for i < len(src.Files) || j < len(got.Files) {
		switch {
		case j == len(got.Files) || (i < len(src.Files) && src.Files[i].Path < got.Files[j].Path):
			d.missing++
			note(fmt.Sprintf("%s missing (%d bytes)", src.Files[i].Path, src.Files[i].Size))
			i++
		case i == len(src.Files) || got.Files[j].Path < src.Files[i].Path:
			d.extra++
			note(fmt.Sprintf("%s extra (%d bytes), not in the backup", got.Files[j].Path, got.Files[j].Size))
			j++
		default:
			a, b := src.Files[i], got.Files[j]
			switch {
			case a.SHA256 != b.SHA256 || a.Size != b.Size || a.Link != b.Link:
				d.different++
				if a.Link != "" || b.Link != "" {
					note(fmt.Sprintf("%s different (a link to %q; backed up a link to %q)", a.Path, b.Link, a.Link))
				} else {
					note(fmt.Sprintf("%s different (%d bytes, sha256 %s; backed up %d bytes, sha256 %s)", a.Path, b.Size, short(b.SHA256), a.Size, short(a.SHA256)))
				}
			case a.Mode != b.Mode:
				d.different++
				note(fmt.Sprintf("%s different (mode %s; backed up %s)", a.Path, b.Mode, a.Mode))
			}
			i, j = i+1, j+1
		}
	}
	return d
}

func short(digest string) string {
	if len(digest) > 12 {
		return digest[:12]
	}
	return digest
}
