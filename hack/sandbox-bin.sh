#!/usr/bin/env bash
# Builds the sandbox's component binaries from the pinned modules under hack/tools into bin/.
# A stamp per component (its package, the module's go.sum and this script's flags) lets a rerun
# skip what is already built; the first run takes about 30-40 minutes on 2 cores.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=${BIN_DIR:-$root/bin}
stamps=$bin/.stamps
mkdir -p "$stamps"

# name|tools module|package|ldflags|build tags|CGO_ENABLED (empty: Go's default)
k8sver=v1.36.3
kver="-X k8s.io/component-base/version.gitVersion=$k8sver -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=36 -X k8s.io/component-base/version.gitTreeState=clean"
ctrdver="-X github.com/containerd/containerd/v2/version.Version=v2.4.2"
cniver="-X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=v1.10.0"
components=(
  "etcd|kube|go.etcd.io/etcd/server/v3||"
  "etcdctl|kube|go.etcd.io/etcd/etcdctl/v3||"
  "etcdutl|kube|go.etcd.io/etcd/etcdutl/v3||"
  "kube-apiserver|kube|k8s.io/kubernetes/cmd/kube-apiserver|$kver|"
  "kube-controller-manager|kube|k8s.io/kubernetes/cmd/kube-controller-manager|$kver|"
  "kube-scheduler|kube|k8s.io/kubernetes/cmd/kube-scheduler|$kver|"
  "kubectl|kube|k8s.io/kubernetes/cmd/kubectl|$kver|"
  "kwok|kube|sigs.k8s.io/kwok/cmd/kwok||"
  "versitygw|versitygw|github.com/versity/versitygw/cmd/versitygw||"
  # Velero's controller-runtime manager would bind :8080 on every interface for its own metrics
  # (no flag for it), so two sandboxes collide; "0" turns that server off. --metrics-address stays.
  # Static: the same binary runs on this machine and, in the real node's image, as node-agent.
  "velero|velero|github.com/vmware-tanzu/velero/cmd/velero|-X github.com/vmware-tanzu/velero/pkg/buildinfo.Version=v1.18.3 -X sigs.k8s.io/controller-runtime/pkg/metrics/server.DefaultBindAddress=0||0"
  "velero-restore-helper|velero|github.com/vmware-tanzu/velero/cmd/velero-restore-helper|||0"
  "velero-plugin-for-aws|velero|github.com/vmware-tanzu/velero-plugin-for-aws/velero-plugin-for-aws||"
  # deploy/'s tests render the Helm chart with the real helm CLI (hack/tools/helm pins it). The
  # Kubernetes version is what `helm template` and `helm lint` assume without a cluster (client-go v0.37).
  "helm|helm|helm.sh/helm/v3/cmd/helm|-X helm.sh/helm/v3/internal/version.version=v3.22.0 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=37 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=37"
  # The real node (sandbox up --real-node): kubelet and kube-proxy beside the control plane,
  # the container runtime and the CNI plugins in hack/tools/node.
  "kubelet|kube|k8s.io/kubernetes/cmd/kubelet|$kver|"
  "kube-proxy|kube|k8s.io/kubernetes/cmd/kube-proxy|$kver|"
  "containerd|node|github.com/containerd/containerd/v2/cmd/containerd|$ctrdver|urfave_cli_no_docs,no_btrfs|0"
  "containerd-shim-runc-v2|node|github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2|$ctrdver|urfave_cli_no_docs,no_grpc|0"
  "ctr|node|github.com/containerd/containerd/v2/cmd/ctr|$ctrdver|urfave_cli_no_docs,no_btrfs|0"
  # runc's nsenter is C; seccomp needs Debian's libseccomp-dev (hack/install-deb.sh installs it).
  "runc|node|github.com/opencontainers/runc|-X main.version=1.5.3|seccomp,urfave_cli_no_docs|1"
  "cni/bridge|node|github.com/containernetworking/plugins/plugins/main/bridge|$cniver||0"
  "cni/host-local|node|github.com/containernetworking/plugins/plugins/ipam/host-local|$cniver||0"
  "cni/loopback|node|github.com/containernetworking/plugins/plugins/main/loopback|$cniver||0"
  "cni/portmap|node|github.com/containernetworking/plugins/plugins/meta/portmap|$cniver||0"
  # NetworkPolicy enforcement on the real node, for the test sandbox only (never shipped).
  "kube-router|kube-router|github.com/cloudnativelabs/kube-router/v2/cmd/kube-router|-X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=v2.1.0||0"
)

# Only names given on the command line, or all.
want=" $* "
total=0
for c in "${components[@]}"; do
  name=${c%%|*}
  [[ $# -eq 0 || $want == *" $name "* ]] && total=$((total + 1))
done

# The real node needs Debian's iptables (kubelet's chains), nftables (kube-proxy's nftables mode),
# ipset (kube-router's firewall) at run time and libseccomp-dev to build runc. Without them (no
# root, no apt-get) the sandbox still builds and runs, kwok-only; `sandbox up` says why.
if [[ $# -eq 0 || $want == *" runc "* || $want == *" kubelet "* ]]; then
  for dep in "iptables iptables" "nftables nft" "ipset ipset" "libseccomp-dev /usr/include/seccomp.h"; do
    # shellcheck disable=SC2086
    if ! "$root/hack/install-deb.sh" $dep; then
      echo "sandbox-bin: WARNING: could not install Debian's ${dep%% *}; the sandbox's real node will not run here" >&2
    fi
  done
fi

i=0
start_all=$SECONDS
for c in "${components[@]}"; do
  IFS='|' read -r name mod pkg ldflags tags cgo <<<"$c"
  [[ $# -eq 0 || $want == *" $name "* ]] || continue
  i=$((i + 1))
  moddir=$root/hack/tools/$mod
  if [[ $name == runc && ! -e /usr/include/seccomp.h ]]; then
    echo "sandbox-bin: WARNING: runc without seccomp support (libseccomp-dev is missing)" >&2
    tags=${tags/seccomp,/}
  fi
  # Tags and cgo join the stamp only when set, so components without them keep their stamps.
  extra=${tags:+tags=$tags\n}${cgo:+cgo=$cgo\n}
  stamp=$(printf "%s\n%s\n$extra" "$pkg" "$ldflags" | cat - "$moddir/go.mod" "$moddir/go.sum" | sha256sum | cut -c1-16)
  if [[ -x $bin/$name && -f $stamps/$name && $(cat "$stamps/$name") == "$stamp" ]]; then
    echo "[$i/$total] $name: up to date"
    continue
  fi
  echo "[$i/$total] $name: building $pkg (hack/tools/$mod) ..."
  t0=$SECONDS
  rm -f "$stamps/$name"
  mkdir -p "$(dirname "$bin/$name")" "$(dirname "$stamps/$name")"
  env=()
  [[ -n $cgo ]] && env=(CGO_ENABLED="$cgo")
  if ! (cd "$moddir" && env "${env[@]}" go build -tags "$tags" -ldflags "-s -w $ldflags" -o "$bin/$name.tmp" "$pkg"); then
    rm -f "$bin/$name.tmp"
    echo "sandbox-bin: FAILED to build $name ($pkg in hack/tools/$mod); see the go output above" >&2
    exit 1
  fi
  mv "$bin/$name.tmp" "$bin/$name"
  echo "$stamp" >"$stamps/$name"
  echo "[$i/$total] $name: built in $((SECONDS - t0))s"
done

# kwok refuses to start without Stage documents; the stock ones ship in its module.
if [[ $# -eq 0 || $want == *" kwok "* ]]; then
  kwokdir=$(cd "$root/hack/tools/kube" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
  mkdir -p "$bin/kwok-stages"
  for s in node/fast node/heartbeat pod/fast; do
    for f in "$kwokdir/kustomize/stage/$s"/*.yaml; do
      [[ $(basename "$f") == kustomization.yaml ]] && continue
      install -m 0644 "$f" "$bin/kwok-stages/${s//\//-}-$(basename "$f")"
    done
  done
fi
# The real node's parts from this checkout's Go sources: its volume provisioner, and its images
# (pause, probe, orders, firedrill, velero) as tarballs in bin/images, each rebuilt only when its inputs changed.
if [[ $# -eq 0 || $want == *" images "* ]]; then
  echo "images: firedrill-local-provisioner and the real node's images ..."
  (cd "$root" && go build -o "$bin/firedrill-local-provisioner" ./sandbox/provisioner && go run ./hack/images -bin "$bin")
fi
echo "sandbox-bin: all components in $bin ($((SECONDS - start_all))s)"
