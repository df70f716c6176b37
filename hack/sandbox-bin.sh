#!/usr/bin/env bash
# Builds the sandbox's component binaries from the pinned modules under hack/tools into bin/.
# A stamp per component (its package, the module's go.sum and this script's flags) lets a rerun
# skip what is already built; the first run takes about 12 minutes on 2 cores.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=${BIN_DIR:-$root/bin}
stamps=$bin/.stamps
mkdir -p "$stamps"

# name|tools module|package|ldflags
k8sver=v1.36.3
kver="-X k8s.io/component-base/version.gitVersion=$k8sver -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=36 -X k8s.io/component-base/version.gitTreeState=clean"
components=(
  "etcd|kube|go.etcd.io/etcd/server/v3|"
  "etcdctl|kube|go.etcd.io/etcd/etcdctl/v3|"
  "etcdutl|kube|go.etcd.io/etcd/etcdutl/v3|"
  "kube-apiserver|kube|k8s.io/kubernetes/cmd/kube-apiserver|$kver"
  "kube-controller-manager|kube|k8s.io/kubernetes/cmd/kube-controller-manager|$kver"
  "kube-scheduler|kube|k8s.io/kubernetes/cmd/kube-scheduler|$kver"
  "kubectl|kube|k8s.io/kubernetes/cmd/kubectl|$kver"
  "kwok|kube|sigs.k8s.io/kwok/cmd/kwok|"
  "versitygw|versitygw|github.com/versity/versitygw/cmd/versitygw|"
  # Velero's controller-runtime manager would bind :8080 on every interface for its own metrics
  # (no flag for it), so two sandboxes collide; "0" turns that server off. --metrics-address stays.
  "velero|velero|github.com/vmware-tanzu/velero/cmd/velero|-X github.com/vmware-tanzu/velero/pkg/buildinfo.Version=v1.18.3 -X sigs.k8s.io/controller-runtime/pkg/metrics/server.DefaultBindAddress=0"
  "velero-plugin-for-aws|velero|github.com/vmware-tanzu/velero-plugin-for-aws/velero-plugin-for-aws|"
  # deploy/'s tests render the Helm chart with the real helm CLI (hack/tools/helm pins it). The
  # Kubernetes version is what `helm template` and `helm lint` assume without a cluster (client-go v0.37).
  "helm|helm|helm.sh/helm/v3/cmd/helm|-X helm.sh/helm/v3/internal/version.version=v3.22.0 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=37 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=37"
)

# Only names given on the command line, or all.
want=" $* "
total=0
for c in "${components[@]}"; do
  name=${c%%|*}
  [[ $# -eq 0 || $want == *" $name "* ]] && total=$((total + 1))
done

i=0
start_all=$SECONDS
for c in "${components[@]}"; do
  IFS='|' read -r name mod pkg ldflags <<<"$c"
  [[ $# -eq 0 || $want == *" $name "* ]] || continue
  i=$((i + 1))
  moddir=$root/hack/tools/$mod
  stamp=$(printf '%s\n%s\n' "$pkg" "$ldflags" | cat - "$moddir/go.mod" "$moddir/go.sum" | sha256sum | cut -c1-16)
  if [[ -x $bin/$name && -f $stamps/$name && $(cat "$stamps/$name") == "$stamp" ]]; then
    echo "[$i/$total] $name: up to date"
    continue
  fi
  echo "[$i/$total] $name: building $pkg (hack/tools/$mod) ..."
  t0=$SECONDS
  rm -f "$stamps/$name"
  if ! (cd "$moddir" && go build -ldflags "-s -w $ldflags" -o "$bin/$name.tmp" "$pkg"); then
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
echo "sandbox-bin: all components in $bin ($((SECONDS - start_all))s)"
