package sandbox

import (
	"fmt"
	"path/filepath"
	"strings"
)

// nodePaths are where the real node's parts live: data under the sandbox's Dir, sockets and
// runtime state under nodeRunDir (short paths, on tmpfs).
type nodePaths struct {
	dir, binDir string
}

func (p nodePaths) node(parts ...string) string {
	return filepath.Join(append([]string{p.dir, "node"}, parts...)...)
}

func (p nodePaths) containerdSock() string { return filepath.Join(nodeRunDir, "containerd.sock") }
func (p nodePaths) kubeletRoot() string    { return p.node("kubelet") }
func (p nodePaths) cniConfDir() string     { return p.node("cni", "net.d") }
func (p nodePaths) volumes() string        { return p.node("volumes") }

// containerdConfig pins everything containerd would otherwise put in /var/lib/containerd,
// /run/containerd or /opt/containerd to the sandbox, and the pause image to the local one.
// Config version 4 ignores the old [grpc]/[ttrpc] sections: addresses go to the server plugins.
func (p nodePaths) containerdConfig(pauseImage string) string {
	q := func(s string) string { return fmt.Sprintf("%q", s) }
	return strings.Join([]string{
		`version = 4`,
		`root = ` + q(p.node("containerd", "root")),
		`state = ` + q(filepath.Join(nodeRunDir, "containerd")),
		`disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.blockfile", "io.containerd.snapshotter.v1.erofs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]`,
		``,
		`[plugins.'io.containerd.server.v1.grpc']`,
		`  address = ` + q(p.containerdSock()),
		`[plugins.'io.containerd.server.v1.ttrpc']`,
		`  address = ` + q(p.containerdSock()+".ttrpc"),
		`[plugins.'io.containerd.server.v1.debug']`,
		`  address = ""`,
		`[plugins.'io.containerd.server.v1.metrics']`,
		`  address = ""`,
		`[plugins.'io.containerd.image-verifier.v1.bindir']`,
		`  bin_dir = ` + q(p.node("containerd", "image-verifier")),
		`[plugins.'io.containerd.internal.v1.opt']`,
		`  path = ` + q(p.node("containerd", "opt")),
		`[plugins.'io.containerd.cri.v1.images']`,
		`  snapshotter = "overlayfs"`,
		`  [plugins.'io.containerd.cri.v1.images'.pinned_images]`,
		`    sandbox = ` + q(pauseImage),
		`[plugins.'io.containerd.cri.v1.runtime']`,
		// Root here may lack CAP_SYS_RESOURCE: runc cannot lower a pod's oom_score_adj below ours.
		`  restrict_oom_score_adj = true`,
		`  netns_mounts_under_state_dir = true`,
		`  [plugins.'io.containerd.cri.v1.runtime'.cni]`,
		`    bin_dirs = [` + q(filepath.Join(p.binDir, "cni")) + `]`,
		`    conf_dir = ` + q(p.cniConfDir()),
		`  [plugins.'io.containerd.cri.v1.runtime'.containerd]`,
		`    default_runtime_name = "runc"`,
		`    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]`,
		`      runtime_type = "io.containerd.runc.v2"`,
		`      disable_pause_image_pull = true`,
		`      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]`,
		`        BinaryName = ` + q(filepath.Join(p.binDir, "runc")),
		`        Root = ` + q(filepath.Join(nodeRunDir, "runc")),
		`        SystemdCgroup = false`,
		`[plugins.'io.containerd.grpc.v1.cri']`,
		`  stream_server_address = "127.0.0.1"`,
		`  stream_server_port = "0"`,
		``,
	}, "\n")
}

// cniConfig is one bridge network on the node's bridge: no masquerade (pod traffic never leaves
// the machine), addresses from the node's pod range, and a route to the Service range through the
// node address but no default route: a pod reaches pods, Services and the node, nothing else.
func (p nodePaths) cniConfig() string {
	return fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "firedrill",
  "plugins": [
    {
      "type": "bridge",
      "bridge": %q,
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": %q, "gateway": %q}]],
        "routes": [{"dst": %q}],
        "dataDir": %q
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, nodeBridge, nodePodCIDR, nodeIP, nodeServices, p.node("cni", "ipam"))
}

// kubeletConfig serves the kubelet API on the node address only, behind webhook authentication
// and authorization (the API server presents a client certificate), with every directory it
// lets us move under the sandbox, and image garbage collection off: images cannot be pulled back.
func (p nodePaths) kubeletConfig(port, healthzPort int, caFile, certFile, keyFile string) string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %s
port: %d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %d
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: %q
authorization:
  mode: Webhook
tlsCertFile: %q
tlsPrivateKeyFile: %q
cgroupDriver: cgroupfs
cgroupRoot: /%s
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://%s
imageServiceEndpoint: unix://%s
podLogsDir: %q
volumePluginDir: %q
resolvConf: %q
clusterDomain: cluster.local
evictionHard:
  memory.available: 10Mi
  nodefs.available: 1%%
  nodefs.inodesFree: 1%%
  imagefs.available: 1%%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
protectKernelDefaults: false
maxPods: 110
`, nodeIP, port, healthzPort, caFile, certFile, keyFile, nodeCgroup,
		p.containerdSock(), p.containerdSock(), p.node("pod-logs"), p.node("volume-plugins"), p.node("resolv.conf"))
}

// kubeProxyConfig: nftables mode on the node's pod range, health and metrics on loopback, and
// the conntrack settings zeroed so it leaves the host's sysctls alone.
func (p nodePaths) kubeProxyConfig(kubeconfig string, healthzPort, metricsPort int) string {
	return fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: %q
hostnameOverride: %s
bindAddress: %s
healthzBindAddress: 127.0.0.1:%d
metricsBindAddress: 127.0.0.1:%d
mode: nftables
clusterCIDR: %s
nodePortAddresses: ["primary"]
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
  tcpBeLiberal: false
`, kubeconfig, RealNodeName, nodeIP, healthzPort, metricsPort, nodePodCIDR)
}
