package controlplane

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// ProbeAPIServer passes once /readyz is ok and the bootstrap controller has made the default
// namespace (shortly after /readyz turns ok).
func ProbeAPIServer(ctx context.Context, c kubernetes.Interface) error {
	body, err := c.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	if err != nil {
		return fmt.Errorf("/readyz: %v %s", err, strings.TrimSpace(string(body)))
	}
	_, err = c.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
	return err
}

// ProbeEtcd passes once etcd at url reports itself healthy.
func ProbeEtcd(ctx context.Context, url string) error {
	body, err := HTTPGet(ctx, url+"/health")
	if err != nil {
		return err
	}
	if !strings.Contains(body, `"health":"true"`) {
		return fmt.Errorf("/health: %s", body)
	}
	return nil
}

// ProbeHealthz passes once url answers 200 "ok".
func ProbeHealthz(ctx context.Context, url string) error {
	body, err := HTTPGet(ctx, url)
	if err != nil {
		return err
	}
	if strings.TrimSpace(body) != "ok" {
		return fmt.Errorf("%s: %s", url, body)
	}
	return nil
}

// insecureLocal talks to components' own self-signed health endpoints on this machine; nothing
// but a health status crosses it.
var insecureLocal = &http.Client{
	Timeout:   5 * time.Second,
	Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true},
}

// HTTPGet fetches a local health or status URL (TLS unverified) and returns up to 4 KiB of body;
// a status other than 200 is an error.
func HTTPGet(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := insecureLocal.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("%s: %s: %s", url, resp.Status, strings.TrimSpace(string(b)))
	}
	return string(b), nil
}

// ProbeServing passes once url answers HTTP at all (an unsigned or unauthenticated request
// being refused still shows the server serves).
func ProbeServing(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := insecureLocal.Do(req)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}
