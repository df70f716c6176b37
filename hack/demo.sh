#!/usr/bin/env bash
# make demo: a real local cluster with Velero, a demo shop deployed into it, shown running; the
# sandbox is stopped at the end whatever happens.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/bin
dir=${DEMO_DIR:-$root/.sandbox/demo}
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "Starting a sandbox in $dir (real etcd, kube-apiserver, controllers, a real node with containerd and NetworkPolicy enforced, S3, Velero with its node-agent)"
"$bin/firedrill" sandbox down --dir "$dir" >/dev/null 2>&1 || true
# --real-node: the demo proves restored data and running software, which needs containers that run.
"$bin/firedrill" sandbox up --velero --real-node --network-policy --dir "$dir"
trap 'step "Stopping the sandbox"; "$bin/firedrill" sandbox down --dir "$dir"' EXIT
# shellcheck disable=SC1091
source "$dir/env"

step "Deploying the demo shop (hack/demo/shop.yaml)"
kubectl apply -f "$root/hack/demo/shop.yaml"

step "Waiting for the shop to run"
kubectl -n shop rollout status deployment/web --timeout=120s
kubectl -n shop rollout status statefulset/orders --timeout=180s

step "Shoppers place 42 orders (kept in SQLite on the orders volume)"
kubectl -n shop exec orders-0 -- /orders add --db /data/orders.db --count 42
echo "production holds $(kubectl -n shop exec orders-0 -- /orders count --db /data/orders.db) orders"

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

step "A Velero drill of the shop: back up its objects and its volume's files, restore them into isolated scratch namespaces, prove the data and the copy's isolation, clean up"
"$bin/firedrill" plan "$root/hack/demo/velero-drill.yaml"
"$bin/firedrill" run "$root/hack/demo/velero-drill.yaml"
echo "The shop itself was not touched:"
kubectl -n shop get service web -o custom-columns=SERVICE:.metadata.name,TYPE:.spec.type
echo "and no scratch namespace is left:"
kubectl get namespaces -l app.kubernetes.io/managed-by=firedrill

step "Kubernetes-native: the etcd drill as a Scenario resource, run by creating a DrillRun (docs/kubernetes.md)"
kubectl apply --server-side -f "$root/deploy/kustomize/base/crds/"
kubectl wait --for=condition=Established --timeout=60s crd/scenarios.firedrill.dev crd/drillruns.firedrill.dev
sed '/^spec:/a\  schedule: "@every 1h"' "$drill" | kubectl -n default apply -f -
"$bin/firedrill" serve --scenarios-from cluster --scenarios-namespace default --listen 127.0.0.1:0 \
  --spool-dir "$dir/spool" >"$dir/serve.log" 2>&1 &
serve=$!
trap '{ kill "$serve"; wait "$serve"; } 2>/dev/null || true; step "Stopping the sandbox"; "$bin/firedrill" sandbox down --dir "$dir"' EXIT
run=$(kubectl -n default create -o name -f - <<'YAML'
apiVersion: firedrill.dev/v1alpha1
kind: DrillRun
metadata: {generateName: demo-control-plane-}
spec:
  scenarioRef: {name: demo-control-plane}
  labels: {change: DEMO-1}
YAML
)
echo "created $run; serve (log: $dir/serve.log) claims it and runs the drill"
if ! kubectl -n default wait --for=condition=Complete --timeout=5m "$run"; then
  tail -n 40 "$dir/serve.log"
  exit 1
fi
kubectl -n default get scenarios
kubectl -n default get drillruns -o wide
echo "the DrillRun names its record and the record's hash in the history's chain:"
kubectl -n default get "$run" -o jsonpath='{.status.runID}  {.status.recordHash}{"\n"}'
kill -TERM "$serve"; wait "$serve" || true

step "The drills' records in the history ($FIREDRILL_HISTORY)"
"$bin/firedrill" history

step "Demo done. Try it yourself: firedrill sandbox up --velero --network-policy; eval \"\$(firedrill sandbox env)\"; kubectl get nodes"
