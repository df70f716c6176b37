package jobexec

import (
	"fmt"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
)

// Observed is what serve sees of a run's Job: the Job (nil once it is gone), its pods and the
// Job's events (FailedCreate: its pod could not be made).
type Observed struct {
	Job    *batchv1.Job
	Pods   []corev1.Pod
	Events []corev1.Event
	// JobSeen says the Job existed once: a Job that is gone was deleted, not never made.
	JobSeen bool
}

// Death says why a drill's Job can no longer deliver its final record, in the words an operator
// searches for, with what to do; "" while it still may. It is judged only without a final
// record: a pod that ended after writing one ended well.
func Death(o Observed, memoryLimit string) string {
	for _, p := range o.Pods {
		if why := podDeath(p, memoryLimit); why != "" {
			return why
		}
	}
	if o.Job == nil {
		if o.JobSeen {
			return "the drill's Job was deleted before the drill ended (kubectl delete job, or its namespace): the run was not finished"
		}
		return ""
	}
	for _, c := range o.Job.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobFailed, batchv1.JobFailureTarget:
			switch c.Reason {
			case batchv1.JobReasonDeadlineExceeded:
				return fmt.Sprintf("Job DeadlineExceeded: it ran past activeDeadlineSeconds (%s): the pod waited too long to start, or the drill hung; raise spec.timeout or look at the pod's events",
					deadlineOf(o.Job))
			case batchv1.JobReasonBackoffLimitExceeded:
				if why := lastPodWords(o.Pods); why != "" {
					return why + " (Job BackoffLimitExceeded; drills are never retried)"
				}
				return "the drill's pod ended without a final record and is gone: deleted by force (kubectl delete pod --force), killed, or lost with its node (Job BackoffLimitExceeded; drills are never retried)"
			}
			return fmt.Sprintf("Job %s (%s): %s", c.Type, c.Reason, c.Message)
		case batchv1.JobComplete, batchv1.JobSuccessCriteriaMet:
			// Complete without a final record: judged by the caller once the log has been read.
		}
	}
	for _, e := range o.Events {
		if e.Reason == "FailedCreate" {
			return failedCreate(e.Message)
		}
	}
	return ""
}

// podDeath is why a pod of the Job is beyond delivering a record; "" while it may.
func podDeath(p corev1.Pod, memoryLimit string) string {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.DisruptionTarget && c.Status == corev1.ConditionTrue {
			return fmt.Sprintf("Job pod %s was disrupted (DisruptionTarget %s: %s): its node was drained, lost or preempted it; the run was not finished",
				p.Name, c.Reason, c.Message)
		}
	}
	if p.Status.Phase == corev1.PodFailed && p.Status.Reason == "Evicted" {
		return fmt.Sprintf("Job pod %s was Evicted: %s; give the drill more (spec.runner.resources) or the node room", p.Name, p.Status.Message)
	}
	for _, cs := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
		if w := cs.State.Waiting; w != nil {
			switch w.Reason {
			case "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull":
				return fmt.Sprintf("Job pod %s cannot pull image %s (%s): %s; set --job-image to an image the nodes can pull", p.Name, cs.Image, w.Reason, w.Message)
			case "CreateContainerConfigError", "CreateContainerError", "RunContainerError":
				return fmt.Sprintf("Job pod %s cannot start its container (%s): %s", p.Name, w.Reason, w.Message)
			}
		}
		if t := cs.State.Terminated; t != nil {
			if p.DeletionTimestamp != nil && t.ExitCode == 0 {
				// Deleted gracefully: the drill stopped on SIGTERM and cleaned up, and its final
				// record was not read before the pod (and its log) went.
				return fmt.Sprintf("Job pod %s was deleted before the drill ended (kubectl delete pod, a drain or an eviction); the drill stopped and cleaned up (exit 0), but its final record went with the pod: the run was not finished", p.Name)
			}
			return terminated(p.Name, t, memoryLimit)
		}
	}
	if p.DeletionTimestamp != nil {
		return fmt.Sprintf("Job pod %s was deleted before the drill ended (kubectl delete pod, a drain or an eviction); the run was not finished", p.Name)
	}
	if p.Status.Phase == corev1.PodFailed {
		return fmt.Sprintf("Job pod %s failed (%s): %s", p.Name, orDefault(p.Status.Reason, "no reason given"), p.Status.Message)
	}
	return ""
}

func terminated(pod string, t *corev1.ContainerStateTerminated, memoryLimit string) string {
	if t.Reason == "OOMKilled" {
		limit := "no limit set"
		if memoryLimit != "" {
			limit = "limit " + memoryLimit
		}
		return fmt.Sprintf("Job pod %s was OOMKilled (%s): raise spec.runner.resources.limits.memory", pod, limit)
	}
	msg := strings.TrimSpace(t.Message)
	if len(msg) > 300 {
		msg = "…" + msg[len(msg)-300:]
	}
	why := fmt.Sprintf("Job pod %s's drill container exited with code %d (%s) without a final record", pod, t.ExitCode, orDefault(t.Reason, "no reason given"))
	if t.ExitCode == 137 || t.Signal == 9 {
		why += ": it was killed (SIGKILL), e.g. deleted with --grace-period=0 or past its grace period"
	}
	if msg != "" {
		why += ": " + msg
	}
	return why
}

// failedCreate explains the Job controller's FailedCreate event.
func failedCreate(msg string) string {
	if i := strings.Index(msg, "serviceaccount"); i >= 0 && strings.Contains(msg, "not found") {
		return "the Job's pod could not be created: its ServiceAccount does not exist (" + msg + "); create it, or fix spec.runner.serviceAccountName or --job-service-account"
	}
	return "the Job's pod could not be created (FailedCreate): " + msg
}

func lastPodWords(pods []corev1.Pod) string {
	for _, p := range pods {
		if why := podDeath(p, ""); why != "" {
			return why
		}
	}
	return ""
}

func deadlineOf(j *batchv1.Job) string {
	if j.Spec.ActiveDeadlineSeconds == nil {
		return "none"
	}
	return fmt.Sprintf("%ds", *j.Spec.ActiveDeadlineSeconds)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
