package sandbox

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/firedrill-dev/firedrill/internal/controlplane"
	"github.com/firedrill-dev/firedrill/sandbox/image"
)

// RealNodeName is the name of the sandbox's real node (Options.RealNode).
const RealNodeName = "firedrill-node"

// Images every real node has imported (see package image); pods use them with
// imagePullPolicy Never or IfNotPresent.
const (
	PauseImage  = image.Pause
	ProbeImage  = image.Probe
	VeleroImage = image.Velero
	OrdersImage = image.Orders // the demo shop's order service
	// FiredrillImage is firedrill's own image, for `serve --executor job`; imported when
	// bin/images holds it (make sandbox-bin builds it).
	FiredrillImage = image.Firedrill
)

// nodeBinaries are what Options.RealNode needs in the bin dir besides the control plane.
var nodeBinaries = []string{
	"kubelet", "kube-proxy", "containerd", "containerd-shim-runc-v2", "ctr", "runc",
	"cni/bridge", "cni/host-local", "cni/loopback", "cni/portmap", "firedrill-local-provisioner",
}

// NodeState describes the real node, as recorded in the sandbox's state.
type NodeState struct {
	Name string `json:"name"`
	// IP is the node's address on its bridge: the API server, the S3 server and the kubelet
	// listen there (and on nothing reachable from outside this machine).
	IP      string `json:"ip"`
	PodCIDR string `json:"podCIDR"`
	// ContainerdSocket is containerd's CRI and API socket (ctr --address, crictl -r).
	ContainerdSocket string `json:"containerdSocket"`
	// KubeletRoot is kubelet's --root-dir: pods' volumes are under KubeletRoot/pods.
	KubeletRoot string `json:"kubeletRoot"`
	// VolumeDir holds the directories of the StorageClass's local PersistentVolumes.
	VolumeDir string   `json:"volumeDir"`
	Images    []string `json:"images"`
}

func (s *Sandbox) nodePaths() nodePaths { return nodePaths{dir: s.opts.Dir, binDir: s.binDir} }

// nodeUsers are the identities the API server gives tokens for, besides the admin.
func nodeUsers() []controlplane.User {
	return []controlplane.User{
		{Name: "system:node:" + RealNodeName, Groups: []string{"system:nodes"}},
		{Name: "system:kube-proxy"}, // bound to system:node-proxier by RBAC's bootstrap policy
	}
}

// apiServerNodeArgs let the API server reach the kubelet as a real cluster does: by the node's
// InternalIP (its name resolves nowhere), with a client certificate, verifying the kubelet's.
func (s *Sandbox) apiServerNodeArgs() []string {
	return []string{
		"--advertise-address=" + nodeIP,
		"--kubelet-client-certificate=" + s.pki.KubeletClientCert,
		"--kubelet-client-key=" + s.pki.KubeletClientKey,
		"--kubelet-certificate-authority=" + s.pki.CA.CertFile,
		"--kubelet-preferred-address-types=InternalIP",
	}
}

// prepareNode claims the machine's real node and sets up its network and directory, before the
// API server starts on the node address.
func (s *Sandbox) prepareNode(ctx context.Context) error {
	if err := claimNode(ctx, s.opts.Dir); err != nil {
		return err
	}
	p := s.nodePaths()
	s.update(func(st *State) {
		st.RealNode = &NodeState{Name: RealNodeName, IP: nodeIP, PodCIDR: nodePodCIDR,
			ContainerdSocket: p.containerdSock(), KubeletRoot: p.kubeletRoot(), VolumeDir: p.volumes()}
	})
	if err := setupNetwork(ctx); err != nil {
		return err
	}
	// Velero's node-agent mounts the kubelet's pods dir with HostToContainer propagation, which
	// needs a shared mount; the host's / is private here, so the node's dir gets its own.
	nd := p.node()
	if err := os.MkdirAll(nd, 0o755); err != nil {
		return err
	}
	if err := syscall.Mount(nd, nd, "", syscall.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind-mount %s: %w", nd, err)
	}
	if err := syscall.Mount("", nd, "", syscall.MS_SHARED|syscall.MS_REC, ""); err != nil {
		return fmt.Errorf("make %s a shared mount: %w", nd, err)
	}
	return nil
}

// startNode starts containerd (with the images imported), kubelet, kube-proxy, the local volume
// provisioner and, with Options.NetworkPolicy, kube-router's firewall, and waits for Node Ready.
func (s *Sandbox) startNode(ctx context.Context) error {
	t0 := time.Now()
	p := s.nodePaths()
	for _, d := range []string{p.node("containerd"), p.cniConfDir(), p.node("cni", "ipam"), p.kubeletRoot(),
		p.node("pod-logs"), p.node("volume-plugins"), p.volumes(), p.node("config")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	files := map[string]string{
		p.node("config", "containerd.toml"):                    p.containerdConfig(PauseImage),
		filepath.Join(p.cniConfDir(), "10-firedrill.conflist"): p.cniConfig(),
		// Pods get no name servers: nothing they could ask is on this machine.
		p.node("resolv.conf"): "",
	}
	for path, content := range files {
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			return err
		}
	}
	kubeletKC, proxyKC := p.node("config", "kubelet.kubeconfig"), p.node("config", "kube-proxy.kubeconfig")
	for kc, user := range map[string]string{kubeletKC: "system:node:" + RealNodeName, proxyKC: "system:kube-proxy"} {
		if _, err := controlplane.WriteKubeconfig(kc, "firedrill", s.state.APIServer, s.pki.CA.CertFile,
			controlplane.Credentials{Token: s.pki.Tokens[user]}); err != nil {
			return err
		}
	}
	kubeletCert, kubeletKey, err := s.pki.CA.Issue(s.pki.Dir, "kubelet", controlplane.CertSpec{
		CommonName: "system:node:" + RealNodeName, Organization: []string{"system:nodes"},
		DNSNames: []string{RealNodeName}, IPs: []net.IP{net.ParseIP(nodeIP)}, Server: true,
	})
	if err != nil {
		return fmt.Errorf("kubelet credentials: %w", err)
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := s.startContainerd(gctx, p); err != nil {
			return err
		}
		_, err := s.launch(gctx, controlplane.Component{
			Name: "kubelet", NPorts: 2, Host: nodeIP,
			Args: func(ports []int) []string {
				cfg := p.node("config", "kubelet.yaml")
				_ = os.WriteFile(cfg, []byte(p.kubeletConfig(ports[0], ports[1], s.pki.CA.CertFile, kubeletCert, kubeletKey)), 0o644)
				return []string{
					"--config=" + cfg, "--kubeconfig=" + kubeletKC, "--root-dir=" + p.kubeletRoot(),
					"--cert-dir=" + p.node("kubelet-pki"), "--node-ip=" + nodeIP, "--hostname-override=" + RealNodeName,
					"--node-labels=firedrill.dev/node=real",
				}
			},
			Ready: func(ctx context.Context, ports []int) error {
				return controlplane.ProbeHealthz(ctx, fmt.Sprintf("http://127.0.0.1:%d/healthz", ports[1]))
			},
		})
		if err != nil {
			return err
		}
		return s.waitNodeReady(gctx)
	})
	g.Go(func() error {
		_, err := s.launch(gctx, controlplane.Component{
			Name: "kube-proxy", NPorts: 2,
			Args: func(ports []int) []string {
				cfg := p.node("config", "kube-proxy.yaml")
				_ = os.WriteFile(cfg, []byte(p.kubeProxyConfig(proxyKC, ports[0], ports[1])), 0o644)
				return []string{"--config=" + cfg}
			},
			Ready: func(ctx context.Context, ports []int) error {
				_, err := controlplane.HTTPGet(ctx, fmt.Sprintf("http://127.0.0.1:%d/livez", ports[0]))
				return err
			},
		})
		return err
	})
	g.Go(func() error {
		_, err := s.launch(gctx, controlplane.Component{
			Name: "firedrill-local-provisioner",
			Args: func([]int) []string {
				return []string{"--kubeconfig=" + s.state.Kubeconfig, "--dir=" + p.volumes(), "--node=" + RealNodeName,
					"--provisioner=" + localProvisioner}
			},
		})
		return err
	})
	if err := g.Wait(); err != nil {
		return err
	}
	if s.opts.NetworkPolicy {
		if err := s.startKubeRouter(ctx); err != nil {
			return err
		}
	}
	fmt.Fprintf(s.progress, "  %-24s ready in %4.1fs  %s (pods on %s, %s)\n", "real node", time.Since(t0).Seconds(), RealNodeName, nodePodCIDR, nodeBridge)
	return nil
}

func (s *Sandbox) startContainerd(ctx context.Context, p nodePaths) error {
	ctr := filepath.Join(s.binDir, "ctr")
	proc, err := s.launch(ctx, controlplane.Component{
		Name: "containerd",
		Args: func([]int) []string { return []string{"--config=" + p.node("config", "containerd.toml")} },
		// containerd finds its shim on PATH.
		Env: []string{"PATH=" + s.binDir + ":" + os.Getenv("PATH")},
		Ready: func(ctx context.Context, _ []int) error {
			_, err := run(ctx, ctr, "--address", p.containerdSock(), "version")
			return err
		},
	})
	if err != nil {
		return err
	}
	// Shims and containers inherit containerd's cgroup, so down finds every one of them.
	if err := makeCgroups(proc.State().PGID); err != nil {
		return err
	}
	refs := []string{PauseImage, ProbeImage, OrdersImage}
	if s.opts.Velero {
		refs = append(refs, VeleroImage)
	}
	if _, err := os.Stat(filepath.Join(s.binDir, "images", image.Tarball(FiredrillImage))); err == nil {
		refs = append(refs, FiredrillImage)
	}
	t0 := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	for _, ref := range refs {
		g.Go(func() error { return s.ImportImage(gctx, filepath.Join(s.binDir, "images", image.Tarball(ref))) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	s.update(func(st *State) { st.RealNode.Images = refs })
	fmt.Fprintf(s.progress, "  %-24s imported in %4.1fs  %s\n", "images", time.Since(t0).Seconds(), strings.Join(refs, ", "))
	return nil
}

// ImportImage imports an image tarball (image.Write, docker save, or an OCI archive) into the
// real node's containerd, where pods find it by its name.
func (s *Sandbox) ImportImage(ctx context.Context, tarball string) error {
	st := s.State()
	if st.RealNode == nil {
		return errors.New("sandbox: ImportImage needs a sandbox started with Options.RealNode")
	}
	_, err := run(ctx, filepath.Join(s.binDir, "ctr"), "--address", st.RealNode.ContainerdSocket, "--namespace", "k8s.io",
		"images", "import", "--platform", "linux/amd64", tarball)
	if err != nil {
		return fmt.Errorf("sandbox: import image %s: %w", tarball, err)
	}
	return nil
}

// BuildImage builds an image from files on this machine and imports it into the real node.
func (s *Sandbox) BuildImage(ctx context.Context, spec image.Spec) error {
	dir, err := os.MkdirTemp(s.opts.Dir, "image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	tar := filepath.Join(dir, "image.tar")
	if err := image.Write(spec, tar); err != nil {
		return err
	}
	return s.ImportImage(ctx, tar)
}

// BuildGoImage builds the Go package pkg (of the module in moduleDir, static) into an image ref
// whose entrypoint is the program, and imports it into the real node: how tests get a workload
// of this repository onto the node.
func (s *Sandbox) BuildGoImage(ctx context.Context, ref, moduleDir, pkg string) error {
	dir, err := os.MkdirTemp(s.opts.Dir, "image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "app")
	if err := image.BuildGo(ctx, moduleDir, pkg, bin); err != nil {
		return err
	}
	return s.BuildImage(ctx, image.Spec{Ref: ref, Files: []image.File{{Path: "/app", Source: bin}}, Entrypoint: []string{"/app"}})
}

func (s *Sandbox) waitNodeReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.ReadyTimeout)
	defer cancel()
	for {
		n, err := s.client.CoreV1().Nodes().Get(ctx, RealNodeName, metav1.GetOptions{})
		if err == nil && nodeReady(n) {
			return nil
		}
		select {
		case <-ctx.Done():
			log := s.launcher.LogPath("kubelet")
			return &ComponentError{Component: "kubelet", Err: fmt.Errorf("node %s not Ready after %s (last: %v)", RealNodeName, s.opts.ReadyTimeout, err),
				Log: log, LastLines: controlplane.TailFile(log, 0, 15)}
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// startKubeRouter runs kube-router's NetworkPolicy firewall only (no routing, no service proxy,
// no CNI), with no listening port. Test sandboxes only: advisories exist for this version.
func (s *Sandbox) startKubeRouter(ctx context.Context) error {
	_, err := s.launch(ctx, controlplane.Component{
		Name: "kube-router",
		Args: func([]int) []string {
			return []string{"--kubeconfig=" + s.state.Kubeconfig, "--hostname-override=" + RealNodeName,
				"--run-firewall=true", "--run-router=false", "--run-service-proxy=false", "--run-loadbalancer=false",
				"--enable-cni=false", "--enable-ipv6=false", "--health-port=0", "--metrics-port=0",
				"--service-cluster-ip-range=" + nodeServices, "--iptables-sync-period=10s"}
		},
		Env: []string{"PATH=" + os.Getenv("PATH") + ":/usr/sbin:/sbin"},
		Ready: func(ctx context.Context, _ []int) error {
			_, err := run(ctx, "iptables", "-S", "KUBE-ROUTER-FORWARD")
			return err
		},
	})
	return err
}
