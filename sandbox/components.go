package sandbox

// Component is one binary of the sandbox, as pinned by hack/tools.
type Component struct {
	Name    string `json:"name"`
	Module  string `json:"module"`
	Version string `json:"version"`
}

// Components lists what `make sandbox-bin` builds. A test checks it against hack/tools/*/go.mod.
var Components = []Component{
	{"etcd", "go.etcd.io/etcd/server/v3", "v3.6.8"},
	{"kube-apiserver", "k8s.io/kubernetes", "v1.36.3"},
	{"kube-controller-manager", "k8s.io/kubernetes", "v1.36.3"},
	{"kube-scheduler", "k8s.io/kubernetes", "v1.36.3"},
	{"kubectl", "k8s.io/kubernetes", "v1.36.3"},
	{"kwok", "sigs.k8s.io/kwok", "v0.8.0"},
	{"velero", "github.com/vmware-tanzu/velero", "v1.18.3"},
	{"velero-plugin-for-aws", "github.com/vmware-tanzu/velero-plugin-for-aws", "v1.14.3"},
	{"versitygw", "github.com/versity/versitygw", "v1.8.0"},
	{"kubelet", "k8s.io/kubernetes", "v1.36.3"},
	{"kube-proxy", "k8s.io/kubernetes", "v1.36.3"},
	{"containerd", "github.com/containerd/containerd/v2", "v2.4.2"},
	{"runc", "github.com/opencontainers/runc", "v1.5.3"},
	{"cni plugins", "github.com/containernetworking/plugins", "v1.10.0"},
	{"kube-router (test sandbox only)", "github.com/cloudnativelabs/kube-router/v2", "v2.1.0"},
}
