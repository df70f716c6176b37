package verify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/utils/exec"

	"github.com/firedrill-dev/firedrill/scenarios"
)

// ExecCheck runs a command in a container of a restored pod, as `kubectl exec` does, and passes
// when its exit code and output are as expected: the restored application answering with its
// own tools.
type ExecCheck struct {
	checkName
	spec   scenarios.ExecCheck
	output *regexp.Regexp
	code   int
}

// outputKept bounds what is kept of the command's output.
const outputKept = 4 << 10

// NewExecCheck builds an exec check; the exit code defaults to 0 and the timeout to 2m.
func NewExecCheck(name string, spec scenarios.ExecCheck) (*ExecCheck, error) {
	if len(spec.Command) == 0 {
		return nil, errors.New("exec.command is required: the command to run in the restored pod")
	}
	if spec.Pod == "" && len(spec.Selector) == 0 {
		return nil, errors.New("exec needs pod or selector: the restored pod to run the command in")
	}
	re, err := regexp.Compile(spec.Expect.OutputPattern)
	if err != nil {
		return nil, fmt.Errorf("exec.expect.outputPattern: %w", err)
	}
	spec.Timeout.Duration = orDuration(spec.Timeout.Duration, scenarios.DefaultProbeTimeout)
	code := 0
	if spec.Expect.ExitCode != nil {
		code = *spec.Expect.ExitCode
	}
	return &ExecCheck{checkName: newCheckName(name, scenarios.CheckExec), spec: spec, output: re, code: code}, nil
}

// Run finds the pod, waiting for it to run, and runs the command once.
func (c *ExecCheck) Run(ctx context.Context, t *VeleroTarget) Outcome {
	ev := map[string]any{"command": c.spec.Command, "expectExitCode": c.code}
	if t.Cluster == nil {
		return noTarget(ev)
	}
	if t.Cluster.Config == nil {
		return errorOutcome(ev, "no connection to run commands in the restored cluster")
	}
	ns, err := scratchOf(t, c.spec.Namespace, "exec")
	if err != nil {
		return errorOutcome(ev, "%v", err)
	}
	ev["namespace"] = ns
	ctx, cancel := context.WithTimeout(ctx, c.spec.Timeout.Duration)
	defer cancel()
	pod, container, err := c.findPod(ctx, t, ns)
	if err != nil {
		return failedOutcome(ev, "%v", err)
	}
	ev["pod"], ev["container"] = pod, container
	stdout, stderr := &capped{n: outputKept}, &capped{n: outputKept}
	code, err := c.exec(ctx, t, ns, pod, container, stdout, stderr)
	ev["stdout"], ev["stderr"] = stdout.String(), stderr.String()
	if err != nil {
		if ctx.Err() != nil {
			return failedOutcome(ev, "the command in %s/%s did not finish within %s", ns, pod, c.spec.Timeout)
		}
		return errorOutcome(ev, "run the command in %s/%s (container %s): %v", ns, pod, container, err)
	}
	ev["exitCode"] = code
	out := strings.TrimSpace(stdout.String())
	switch {
	case code != c.code:
		return failedOutcome(ev, "the command in %s/%s exited %d, want %d; stderr: %s", ns, pod, code, c.code, excerpt(strings.TrimSpace(stderr.String()), 200))
	case !c.output.MatchString(out):
		return failedOutcome(ev, "the command in %s/%s exited %d but its output does not match %q: %s", ns, pod, code, c.spec.Expect.OutputPattern, excerpt(out, 200))
	}
	return passedOutcome(ev, "the command in %s/%s (container %s) exited %d: %s", ns, pod, container, code, excerpt(out, 120))
}

// findPod waits for a running pod that matches, and picks its container.
func (c *ExecCheck) findPod(ctx context.Context, t *VeleroTarget, ns string) (string, string, error) {
	want := "pod " + c.spec.Pod
	opts := metav1.ListOptions{}
	if len(c.spec.Selector) > 0 {
		opts.LabelSelector = labels.SelectorFromSet(c.spec.Selector).String()
		want = "a pod with labels " + opts.LabelSelector
	}
	var seen []string
	for wait := 250 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		l, err := t.Cluster.Kube.CoreV1().Pods(ns).List(ctx, opts)
		if err == nil {
			seen = seen[:0]
			for _, p := range l.Items {
				if c.spec.Pod != "" {
					if ok, _ := filepath.Match(c.spec.Pod, p.Name); !ok {
						continue
					}
				}
				seen = append(seen, p.Name+" "+string(p.Status.Phase))
				if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
					continue
				}
				container := c.spec.Container
				if container == "" {
					container = p.Spec.Containers[0].Name
				}
				if slices.ContainsFunc(p.Status.ContainerStatuses, func(s corev1.ContainerStatus) bool { return s.Name == container && s.State.Running != nil }) {
					return p.Name, container, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			if len(seen) == 0 {
				return "", "", fmt.Errorf("no %s in %s within %s", want, ns, c.spec.Timeout)
			}
			return "", "", fmt.Errorf("no running %s in %s within %s (found: %s)", want, ns, c.spec.Timeout, strings.Join(seen, ", "))
		case <-time.After(wait):
		}
	}
}

// exec runs the command and returns its exit code; an error means it could not be run.
func (c *ExecCheck) exec(ctx context.Context, t *VeleroTarget, ns, pod, container string, stdout, stderr *capped) (int, error) {
	req := t.Cluster.Kube.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: container, Command: c.spec.Command, Stdout: true, Stderr: true}, scheme.ParameterCodec)
	ws, err := remotecommand.NewWebSocketExecutor(t.Cluster.Config, "GET", req.URL().String())
	if err != nil {
		return 0, err
	}
	spdy, err := remotecommand.NewSPDYExecutor(t.Cluster.Config, "POST", req.URL())
	if err != nil {
		return 0, err
	}
	exe, err := remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
	if err != nil {
		return 0, err
	}
	err = exe.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: stdout, Stderr: stderr})
	var exit utilexec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &exit):
		return exit.ExitStatus(), nil
	}
	return 0, err
}

// capped keeps the last n bytes written to it.
type capped struct {
	buf bytes.Buffer
	n   int
}

func (c *capped) Write(p []byte) (int, error) {
	c.buf.Write(p)
	if over := c.buf.Len() - c.n; over > 0 {
		c.buf.Next(over)
	}
	return len(p), nil
}

func (c *capped) String() string { return c.buf.String() }
