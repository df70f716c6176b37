package verify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/firedrill-dev/firedrill/internal/probe"
	"github.com/firedrill-dev/firedrill/internal/probepod"
	"github.com/firedrill-dev/firedrill/scenarios"
)

// probeGrace is what a probe pod gets beyond its probe's own time: scheduling, starting, exiting.
const probeGrace = time.Minute

// runProbe runs firedrill-probe in a pod of namespace ns and decodes its result into out.
func runProbe(ctx context.Context, kube kubernetes.Interface, t *VeleroTarget, p probepod.Pod, out any) error {
	if t.ProbeImage == "" {
		return errors.New("no probe image: firedrill runs this check in a pod of its probe image (firedrill run --probe-image)")
	}
	p.Image, p.RunID = t.ProbeImage, t.RunID
	return probepod.Result(ctx, kube, p, out)
}

// serviceAddress resolves Service name in namespace ns to "clusterIP:port": the probe pods reach it
// so, without depending on cluster DNS. port 0 takes the Service's first port.
func serviceAddress(ctx context.Context, kube kubernetes.Interface, ns, name string, port int32) (string, *corev1.Service, error) {
	svc, err := kube.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return "", nil, fmt.Errorf("service %s/%s does not exist", ns, name)
		}
		return "", nil, err
	}
	if len(svc.Spec.Ports) == 0 {
		return "", svc, fmt.Errorf("service %s/%s has no ports", ns, name)
	}
	if port == 0 {
		port = svc.Spec.Ports[0].Port
	} else if !hasPort(svc, port) {
		return "", svc, fmt.Errorf("service %s/%s has no port %d", ns, name, port)
	}
	ip := svc.Spec.ClusterIP
	if ip == "" || ip == corev1.ClusterIPNone {
		return "", svc, fmt.Errorf("service %s/%s has no cluster IP (headless): name a Service with one", ns, name)
	}
	return net.JoinHostPort(ip, strconv.Itoa(int(port))), svc, nil
}

func hasPort(svc *corev1.Service, port int32) bool {
	for _, p := range svc.Spec.Ports {
		if p.Port == port {
			return true
		}
	}
	return false
}

// HTTPCheck makes a GET to a restored Service from a probe pod inside its scratch namespace,
// repeated until the answer is as expected or the timeout passes.
type HTTPCheck struct {
	checkName
	spec scenarios.HTTPCheck
	body *regexp.Regexp
}

// NewHTTPCheck builds an http check with the loader's defaults for zero values.
func NewHTTPCheck(name string, spec scenarios.HTTPCheck) (*HTTPCheck, error) {
	if spec.Service == "" {
		return nil, errors.New("http.service is required: the restored Service to ask")
	}
	re, err := regexp.Compile(spec.Expect.BodyPattern)
	if err != nil {
		return nil, fmt.Errorf("http.expect.bodyPattern: %w", err)
	}
	spec.Timeout.Duration = orDuration(spec.Timeout.Duration, scenarios.DefaultProbeTimeout)
	if spec.Path == "" {
		spec.Path = "/"
	}
	if spec.Scheme == "" {
		spec.Scheme = "http"
	}
	if spec.Expect.Status == 0 {
		spec.Expect.Status = scenarios.DefaultHTTPStatus
	}
	return &HTTPCheck{checkName: newCheckName(name, scenarios.CheckHTTP), spec: spec, body: re}, nil
}

// Run asks the restored Service.
func (c *HTTPCheck) Run(ctx context.Context, t *VeleroTarget) Outcome {
	ev := map[string]any{"service": c.spec.Service, "path": c.spec.Path, "expectStatus": c.spec.Expect.Status}
	if c.spec.Expect.BodyPattern != "" {
		ev["expectBody"] = c.spec.Expect.BodyPattern
	}
	if t.Cluster == nil {
		return noTarget(ev)
	}
	ns, err := scratchOf(t, c.spec.Namespace, "http")
	if err != nil {
		return errorOutcome(ev, "%v", err)
	}
	ev["namespace"] = ns
	addr, _, err := serviceAddress(ctx, t.Cluster.Kube, ns, c.spec.Service, c.spec.Port)
	if err != nil {
		return failedOutcome(ev, "nothing to ask: %v", err)
	}
	url := c.spec.Scheme + "://" + addr + c.spec.Path
	ev["url"] = url
	var r probe.HTTPResult
	args := []string{"http", url, "--for", c.spec.Timeout.String(), "--expect-status", strconv.Itoa(c.spec.Expect.Status), "--expect-body", c.spec.Expect.BodyPattern}
	if err := runProbe(ctx, t.Cluster.Kube, t, probepod.Pod{Namespace: ns, Probe: "http", Args: args, Timeout: c.spec.Timeout.Duration + probeGrace}, &r); err != nil {
		return errorOutcome(ev, "http probe: %v", err)
	}
	ev["status"], ev["answeredBy"], ev["bodyBytes"], ev["bodySHA256"], ev["attempts"] = r.Status, r.Remote, r.BodyBytes, r.BodySHA256, r.Attempts
	ev["body"] = excerpt(r.Body, 256)
	switch {
	case r.Status == 0:
		return failedOutcome(ev, "GET %s did not answer within %s (%d attempts): %s", url, c.spec.Timeout, r.Attempts, r.Error)
	case r.Status != c.spec.Expect.Status:
		return failedOutcome(ev, "GET %s answered %d, want %d (%d attempts over %s); body: %s", url, r.Status, c.spec.Expect.Status, r.Attempts, c.spec.Timeout, excerpt(r.Body, 120))
	case !c.body.MatchString(r.Body):
		return failedOutcome(ev, "GET %s answered %d but the body does not match %q: %s", url, r.Status, c.spec.Expect.BodyPattern, excerpt(r.Body, 120))
	}
	return passedOutcome(ev, "GET %s answered %d from %s after %d attempt(s)", url, r.Status, r.Remote, r.Attempts)
}

// excerpt is the start of s, for messages and evidence: a restored app's answer, never a secret
// firedrill read.
func excerpt(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// TCPCheck connects to a restored Service from a probe pod inside its scratch namespace.
type TCPCheck struct {
	checkName
	spec scenarios.TCPCheck
}

// NewTCPCheck builds a tcp check; the timeout defaults to 2m.
func NewTCPCheck(name string, spec scenarios.TCPCheck) (*TCPCheck, error) {
	if spec.Service == "" {
		return nil, errors.New("tcp.service is required: the restored Service to connect to")
	}
	spec.Timeout.Duration = orDuration(spec.Timeout.Duration, scenarios.DefaultProbeTimeout)
	return &TCPCheck{checkName: newCheckName(name, scenarios.CheckTCP), spec: spec}, nil
}

// Run connects to the restored Service.
func (c *TCPCheck) Run(ctx context.Context, t *VeleroTarget) Outcome {
	ev := map[string]any{"service": c.spec.Service}
	if t.Cluster == nil {
		return noTarget(ev)
	}
	ns, err := scratchOf(t, c.spec.Namespace, "tcp")
	if err != nil {
		return errorOutcome(ev, "%v", err)
	}
	ev["namespace"] = ns
	addr, _, err := serviceAddress(ctx, t.Cluster.Kube, ns, c.spec.Service, c.spec.Port)
	if err != nil {
		return failedOutcome(ev, "nothing to connect to: %v", err)
	}
	ev["address"] = addr
	var r probe.TCPResult
	if err := runProbe(ctx, t.Cluster.Kube, t, probepod.Pod{Namespace: ns, Probe: "tcp", Args: []string{"tcp", addr, "--for", c.spec.Timeout.String()},
		Timeout: c.spec.Timeout.Duration + probeGrace}, &r); err != nil {
		return errorOutcome(ev, "tcp probe: %v", err)
	}
	ev["connected"], ev["answeredBy"], ev["attempts"] = r.Connected, r.Remote, r.Attempts
	if !r.Connected {
		return failedOutcome(ev, "no connection to %s/%s (%s) within %s (%d attempts): %s", ns, c.spec.Service, addr, c.spec.Timeout, r.Attempts, r.Error)
	}
	return passedOutcome(ev, "connected to %s/%s at %s (answered by %s) after %d attempt(s)", ns, c.spec.Service, addr, r.Remote, r.Attempts)
}
