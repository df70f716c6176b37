package main

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/firedrill-dev/firedrill/service"
)

// jobFlags are serve's --executor and --job-* flags.
type jobFlags struct {
	executor string
	jobs     service.Jobs
}

func (j *jobFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&j.executor, "executor", "process", "where drills run: process (inside serve) or job (each drill a Kubernetes Job from firedrill's image; see docs/serve.md)")
	fl.StringVar(&j.jobs.Image, "job-image", "", "with --executor job: firedrill's image the Jobs run (default: $FIREDRILL_JOB_IMAGE, else the image serve's own pod runs)")
	fl.StringVar(&j.jobs.Namespace, "job-namespace", "", "with --executor job: the namespace of the Jobs (default: serve's own namespace, else default)")
	fl.StringVar(&j.jobs.ServiceAccount, "job-service-account", "", "with --executor job: the ServiceAccount Jobs run as unless a scenario sets spec.runner.serviceAccountName (default: the namespace's default)")
}

// resolve checks the flags and fills cfg.Jobs; ownImage finds the image of serve's pod.
func (j *jobFlags) resolve(cfg *service.Config, getenv func(string) string, probeImage string, ownImage func() (string, error)) error {
	const hint = "Run 'firedrill serve --help' for usage."
	switch j.executor {
	case "process":
		if j.jobs.Image != "" || j.jobs.Namespace != "" || j.jobs.ServiceAccount != "" {
			return usagef(hint, "--job-image, --job-namespace and --job-service-account need --executor job")
		}
		return nil
	case "job":
	default:
		return usagef(hint, "--executor %q: use process or job", j.executor)
	}
	jobs := j.jobs
	jobs.Image = cmp.Or(jobs.Image, getenv("FIREDRILL_JOB_IMAGE"))
	if jobs.Image == "" {
		img, err := ownImage()
		if err != nil {
			return usagef("Set --job-image to firedrill's image (the one serve runs), e.g. ghcr.io/firedrill-dev/firedrill:"+version+".",
				"--executor job needs firedrill's image for the Jobs, and serve could not find its own: %v", err)
		}
		jobs.Image = img
	}
	if probeImage != "" {
		jobs.Env = append(jobs.Env, corev1.EnvVar{Name: "FIREDRILL_PROBE_IMAGE", Value: probeImage})
	}
	cfg.Jobs = &jobs
	return nil
}

// ownImage is the image of serve's container, read from its own pod (its name is the host
// name, its namespace the ServiceAccount's): what --job-image defaults to in a cluster.
func (a *app) ownImage() (string, error) {
	b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
	if err != nil {
		return "", fmt.Errorf("not running in a Kubernetes pod (%v)", err)
	}
	rc, err := a.restConfig()
	if err != nil {
		return "", err
	}
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return "", err
	}
	host, _ := os.Hostname()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pod, err := kube.CoreV1().Pods(strings.TrimSpace(string(b))).Get(ctx, host, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("read serve's own pod %s: %w", host, err)
	}
	for _, c := range pod.Spec.Containers {
		if c.Name == "firedrill" || len(pod.Spec.Containers) == 1 {
			return c.Image, nil
		}
	}
	return "", fmt.Errorf("serve's pod %s has no container named firedrill", host)
}
