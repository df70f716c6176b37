package sandbox

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

const contextName = "firedrill-sandbox"

// connect writes the admin kubeconfig for an API server on port and builds clients from it.
func (s *Sandbox) connect(port int) error {
	server := loopbackURL("https", port)
	if s.rest != nil && s.rest.Host == server {
		return nil
	}
	ca, err := os.ReadFile(s.pki.CACert)
	if err != nil {
		return err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[contextName] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca}
	cfg.AuthInfos[contextName] = &clientcmdapi.AuthInfo{Token: s.pki.AdminToken}
	cfg.Contexts[contextName] = &clientcmdapi.Context{Cluster: contextName, AuthInfo: contextName, Namespace: "default"}
	cfg.CurrentContext = contextName
	if err := clientcmd.WriteToFile(*cfg, s.state.Kubeconfig); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	rc, err := clientcmd.NewDefaultClientConfig(*cfg, nil).ClientConfig()
	if err != nil {
		return err
	}
	rc.QPS, rc.Burst = 100, 200
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	s.rest, s.client = rc, client
	s.update(func(st *State) { st.APIServer = server })
	return nil
}

func probeAPIServer(ctx context.Context, c kubernetes.Interface) error {
	body, err := c.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	if err != nil {
		return fmt.Errorf("/readyz: %v %s", err, strings.TrimSpace(string(body)))
	}
	// The bootstrap controller creates the default namespace shortly after /readyz turns ok.
	_, err = c.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
	return err
}

func probeDefaultServiceAccount(ctx context.Context, c kubernetes.Interface) error {
	_, err := c.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
	return err
}

func probeEtcd(ctx context.Context, url string) error {
	body, err := httpGet(ctx, url+"/health")
	if err != nil {
		return err
	}
	if !strings.Contains(body, `"health":"true"`) {
		return fmt.Errorf("/health: %s", body)
	}
	return nil
}

func probeHealthz(ctx context.Context, url string) error {
	body, err := httpGet(ctx, url)
	if err != nil {
		return err
	}
	if strings.TrimSpace(body) != "ok" {
		return fmt.Errorf("%s: %s", url, body)
	}
	return nil
}

// insecureLoopback talks to components' own self-signed health endpoints on loopback; nothing
// but a health status crosses it.
var insecureLoopback = &http.Client{
	Timeout:   5 * time.Second,
	Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true},
}

func httpGet(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := insecureLoopback.Do(req)
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

// createNodes registers the kwok nodes and waits until kwok reports each Ready.
func (s *Sandbox) createNodes(ctx context.Context) error {
	t0 := time.Now()
	nodes := s.client.CoreV1().Nodes()
	names := make([]string, s.opts.Nodes)
	for i := range names {
		names[i] = fmt.Sprintf("kwok-node-%d", i)
		n := fakeNode(names[i])
		if _, err := nodes.Create(ctx, n, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return &ComponentError{Component: "kwok", Err: fmt.Errorf("create node %s: %w", names[i], err)}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.ReadyTimeout)
	defer cancel()
	for _, name := range names {
		for {
			n, err := nodes.Get(ctx, name, metav1.GetOptions{})
			if err == nil && nodeReady(n) {
				break
			}
			select {
			case <-ctx.Done():
				if errors.Is(ctx.Err(), context.DeadlineExceeded) {
					return &ComponentError{Component: "kwok", Err: fmt.Errorf("node %s not Ready after %s", name, s.opts.ReadyTimeout),
						Log: logOf(s, "kwok"), LastLines: tailFile(logOf(s, "kwok"), 0, 15)}
				}
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	fmt.Fprintf(s.progress, "  %-24s ready in %4.1fs  %s\n", fmt.Sprintf("%d kwok node(s)", len(names)), time.Since(t0).Seconds(), strings.Join(names, ","))
	return nil
}

func logOf(s *Sandbox, name string) string {
	return filepath.Join(s.opts.Dir, "logs", name+".log")
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// fakeNode is a Node that kwok manages (the annotation) with room for a demo and a few drills.
func fakeNode(name string) *corev1.Node {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   resource.MustParse("250"),
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Annotations: map[string]string{
				"kwok.x-k8s.io/node":           "fake",
				"node.alpha.kubernetes.io/ttl": "0",
			},
			Labels: map[string]string{
				"kubernetes.io/hostname": name,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
				"type":                   "kwok",
			},
		},
		Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity},
	}
}

// StorageClass is the sandbox's default StorageClass. The controller-manager's hostPath
// provisioner serves it, so PersistentVolumeClaims bind without a CSI driver.
const StorageClass = "standard"

func createStorageClass(ctx context.Context, c kubernetes.Interface) error {
	sc := &storagev1.StorageClass{
		ObjectMeta: metav1.ObjectMeta{Name: StorageClass,
			Annotations: map[string]string{"storageclass.kubernetes.io/is-default-class": "true"}},
		Provisioner: "kubernetes.io/host-path",
	}
	_, err := c.StorageV1().StorageClasses().Create(ctx, sc, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}
