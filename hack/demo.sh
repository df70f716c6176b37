#!/usr/bin/env bash
# make demo: a real local cluster with Velero, a demo shop deployed into it, shown running; the
# sandbox is stopped at the end whatever happens.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/bin
dir=${DEMO_DIR:-$root/.sandbox/demo}
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "Starting a sandbox with Velero in $dir (real etcd, kube-apiserver, controllers, kwok nodes, S3, Velero)"
"$bin/firedrill" sandbox down --dir "$dir" >/dev/null 2>&1 || true
"$bin/firedrill" sandbox up --velero --dir "$dir"
trap 'step "Stopping the sandbox"; "$bin/firedrill" sandbox down --dir "$dir"' EXIT
# shellcheck disable=SC1091
source "$dir/env"

step "Deploying the demo shop (hack/demo/shop.yaml)"
kubectl apply -f "$root/hack/demo/shop.yaml"

step "Waiting for the shop to run"
kubectl -n shop rollout status deployment/web --timeout=120s
kubectl -n shop rollout status statefulset/db --timeout=120s
kubectl -n shop wait --for=jsonpath='{.status.phase}'=Bound pvc/data-db-0 --timeout=60s

step "The shop"
kubectl -n shop get deployments,statefulsets,pods,services,ingresses,cronjobs,pvc,configmaps,secrets

step "Velero's backup location"
kubectl -n velero get backupstoragelocations.velero.io \
  -o custom-columns=NAME:.metadata.name,PHASE:.status.phase,BUCKET:.spec.objectStorage.bucket,URL:.spec.config.s3Url

step "An etcd drill of the control plane: plan it, then run it"
drill=$dir/etcd-drill.yaml
sed "s#@ETCD_ENDPOINT@#${FIREDRILL_ETCD_ENDPOINTS%%,*}#" "$root/hack/demo/etcd-drill.yaml" >"$drill"
export FIREDRILL_HISTORY=$dir/history.db
"$bin/firedrill" plan "$drill"
"$bin/firedrill" run "$drill"

step "A Velero drill of the shop: back it up, restore it into isolated scratch namespaces, check, clean up"
"$bin/firedrill" plan "$root/hack/demo/velero-drill.yaml"
"$bin/firedrill" run "$root/hack/demo/velero-drill.yaml"
echo "The shop itself was not touched:"
kubectl -n shop get service web -o custom-columns=SERVICE:.metadata.name,TYPE:.spec.type
echo "and no scratch namespace is left:"
kubectl get namespaces -l app.kubernetes.io/managed-by=firedrill

step "The drills' records in the history ($FIREDRILL_HISTORY)"
"$bin/firedrill" history

step "Demo done. Try it yourself: firedrill sandbox up --velero; eval \"\$(firedrill sandbox env)\"; kubectl get nodes"
