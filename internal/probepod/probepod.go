// Package probepod runs firedrill-probe in a short-lived pod and reads its one JSON result: the
// way firedrill looks at restored software and data from inside the cluster, where its network
// rules and volumes are. A probe pod is labelled as firedrill's, asks for little, runs without a
// service account token, and is deleted when its result is read (or on any error).
package probepod

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Labels every probe pod carries; LabelProbe says what it probes. AnnotationExpires is when the
// janitor may delete a pod its run left (a crash): a minute after the pod's Timeout.
const (
	LabelManagedBy    = "app.kubernetes.io/managed-by"
	ManagedBy         = "firedrill"
	LabelRun          = "firedrill.dev/run"
	LabelProbe        = "firedrill.dev/probe"
	AnnotationExpires = "firedrill.dev/expires"
)

// expiryMargin is how long after its Timeout a probe pod expires.
const expiryMargin = time.Minute

// Pod is one probe to run.
type Pod struct {
	Namespace string
	// Probe names the kind of probe ("manifest", "http", "tcp"): the pod's name prefix and label.
	Probe string
	RunID string
	Image string
	// Args are firedrill-probe's arguments.
	Args []string
	// NodeName pins the pod to a node: a ReadWriteOnce volume can only be mounted there.
	NodeName string
	// Claim, when set, is mounted read-only at MountPath.
	Claim, MountPath string
	// Timeout bounds the pod's whole life, from creation to result.
	Timeout time.Duration
}

// ErrNotStarted wraps a pod that could not start: the image is not there, the pod does not fit.
var ErrNotStarted = errors.New("probe pod did not start")

// Run creates the pod, waits for it to end and returns what it printed. A probe that ran returns
// its output even when its verdict is bad; an error means there is no result.
func Run(ctx context.Context, kube kubernetes.Interface, p Pod) ([]byte, error) {
	if p.Timeout <= 0 {
		p.Timeout = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	pod, err := kube.CoreV1().Pods(p.Namespace).Create(ctx, spec(p), metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create %s probe pod in %s: %w", p.Probe, p.Namespace, err)
	}
	defer func() {
		dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer dcancel()
		_ = kube.CoreV1().Pods(p.Namespace).Delete(dctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: ptrTo[int64](0)})
	}()
	wait := 100 * time.Millisecond
	for {
		cur, err := kube.CoreV1().Pods(p.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		switch {
		case err != nil && ctx.Err() != nil:
			return nil, notDone(p, pod, ctx)
		case err != nil:
			return nil, fmt.Errorf("read probe pod %s/%s: %w", p.Namespace, pod.Name, err)
		case cur.Status.Phase == corev1.PodSucceeded:
			return logs(ctx, kube, cur)
		case cur.Status.Phase == corev1.PodFailed:
			out, _ := logs(ctx, kube, cur)
			return nil, fmt.Errorf("probe pod %s/%s failed: %s", p.Namespace, pod.Name, strings.TrimSpace(terminated(cur)+" "+string(out)))
		}
		if why := notStarting(cur); why != "" {
			return nil, fmt.Errorf("%w: %s/%s: %s", ErrNotStarted, p.Namespace, pod.Name, why)
		}
		pod = cur
		select {
		case <-ctx.Done():
			return nil, notDone(p, pod, ctx)
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// Result runs the pod and decodes its JSON result into out.
func Result(ctx context.Context, kube kubernetes.Interface, p Pod, out any) error {
	b, err := Run(ctx, kube, p)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("the %s probe's result does not decode: %v: %.200q", p.Probe, err, b)
	}
	return nil
}

func spec(p Pod) *corev1.Pod {
	root := p.Claim != ""
	sc := &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptrTo(false), ReadOnlyRootFilesystem: ptrTo(true),
		Capabilities:   &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	if root {
		// Reading every file of a volume, whoever owns it, takes root's DAC_READ_SEARCH; the
		// volume is mounted read-only and nothing else is granted.
		sc.RunAsUser, sc.RunAsNonRoot = ptrTo[int64](0), ptrTo(false)
		sc.Capabilities.Add = []corev1.Capability{"DAC_READ_SEARCH"}
	} else {
		sc.RunAsUser, sc.RunAsNonRoot = ptrTo[int64](65534), ptrTo(true)
	}
	c := corev1.Container{
		Name: "probe", Image: p.Image, ImagePullPolicy: corev1.PullIfNotPresent,
		Command: []string{"/firedrill-probe"}, Args: p.Args, SecurityContext: sc,
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("128Mi")},
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, GenerateName: "firedrill-probe-" + p.Probe + "-",
			Labels:      map[string]string{LabelManagedBy: ManagedBy, LabelRun: p.RunID, LabelProbe: p.Probe},
			Annotations: map[string]string{AnnotationExpires: time.Now().Add(p.Timeout + expiryMargin).UTC().Format(time.RFC3339)}},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever, AutomountServiceAccountToken: ptrTo(false),
			EnableServiceLinks: ptrTo(false), NodeName: p.NodeName,
			ActiveDeadlineSeconds:         ptrTo(int64(p.Timeout.Seconds()) + 1),
			TerminationGracePeriodSeconds: ptrTo[int64](1),
			Containers:                    []corev1.Container{c},
		},
	}
	if p.Claim != "" {
		pod.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: p.Claim, ReadOnly: true}}}}
		pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: p.MountPath, ReadOnly: true}}
	}
	return pod
}

// notStarting says why a pod will not start by itself, or "".
func notStarting(p *corev1.Pod) string {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			return "unschedulable: " + c.Message
		}
	}
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil && slices.Contains([]string{"ErrImageNeverPull", "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError", "CreateContainerError"}, w.Reason) {
			msg := w.Reason + ": " + w.Message
			if strings.Contains(w.Reason, "Image") {
				msg += " (the probe image must be on the nodes or pullable: firedrill run --probe-image)"
			}
			return msg
		}
	}
	return ""
}

func terminated(p *corev1.Pod) string {
	for _, cs := range p.Status.ContainerStatuses {
		if t := cs.State.Terminated; t != nil {
			return fmt.Sprintf("exit code %d %s %s", t.ExitCode, t.Reason, t.Message)
		}
	}
	return p.Status.Reason + " " + p.Status.Message
}

func notDone(p Pod, pod *corev1.Pod, ctx context.Context) error {
	state := string(pod.Status.Phase)
	for _, cs := range pod.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil {
			state += " (" + w.Reason + ")"
		}
	}
	return fmt.Errorf("probe pod %s/%s did not finish within %s: %s: %w", p.Namespace, pod.Name, p.Timeout, state, context.Cause(ctx))
}

// maxResult bounds what is read of a probe's output: a manifest of a million files fits.
const maxResult = 256 << 20

func logs(ctx context.Context, kube kubernetes.Interface, p *corev1.Pod) ([]byte, error) {
	b, err := kube.CoreV1().Pods(p.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{Container: "probe", LimitBytes: ptrTo[int64](maxResult)}).DoRaw(ctx)
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("probe pod %s/%s is gone before its result was read", p.Namespace, p.Name)
		}
		return nil, fmt.Errorf("read the result of probe pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	return b, nil
}

func ptrTo[T any](v T) *T { return &v }
