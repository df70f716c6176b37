# firedrill — the targets CI and people use. `make test` is what .ci/run calls.
SHELL := /usr/bin/env bash
GO    ?= go
BIN   := $(CURDIR)/bin

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT)

# Tests find the component binaries and the firedrill binary here.
export FIREDRILL_BIN_DIR := $(BIN)
export FIREDRILL_BINARY  := $(BIN)/firedrill

.PHONY: all build generate test test-unit demo bench bench-serve browser promtool lint sandbox-bin clean

all: build

## build: bin/firedrill and bin/firedrill-probe (what checks run inside a cluster)
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/firedrill ./cmd/firedrill
	CGO_ENABLED=0 $(GO) build -ldflags "-s -w" -o $(BIN)/firedrill-probe ./cmd/firedrill-probe

## generate: the Scenario and DrillRun CRDs from api/v1alpha1 with controller-gen (pinned in hack/tools/controller-gen), into the kustomize base and the chart
# (deploy/crd_test.go runs this target with other directories to prove the committed files fresh.)
CRDS          := firedrill.dev_scenarios.yaml firedrill.dev_drillruns.yaml
CRD_DIR       ?= deploy/kustomize/base/crds
CHART_CRD_DIR ?= deploy/helm/firedrill/crds
generate:
	cd hack/tools/controller-gen && $(GO) build -o $(BIN)/controller-gen sigs.k8s.io/controller-tools/cmd/controller-gen
	$(BIN)/controller-gen crd:allowDangerousTypes=true paths=./api/... output:crd:dir=$(CRD_DIR)
	for f in $(CRDS); do cp $(CRD_DIR)/$$f $(CHART_CRD_DIR)/$$f; done

## sandbox-bin: the sandbox's pinned component binaries, helm and the real node's parts and images (cold: about 30-40 minutes; then seconds)
sandbox-bin:
	./hack/sandbox-bin.sh

## browser: Debian's chromium for the dashboard's browser test (apt-get; nothing when it is there)
browser:
	./hack/install-deb.sh chromium chromium chromium-browser

## promtool: Debian's promtool for deploy/'s alert tests (apt-get; nothing when it is there)
promtool:
	./hack/install-deb.sh prometheus promtool

## test: unit, integration (against the sandbox) and end-to-end tests; builds what they need first
test: sandbox-bin build browser promtool
	@echo "== unit, integration and end-to-end tests (integration and e2e run real components from bin/)"
	$(GO) test -count=1 -timeout 40m ./...

## test-unit: the fast tier only: pure logic, no sandbox
test-unit:
	$(GO) test -short ./...

## demo: start a sandbox with Velero, deploy a demo shop, show it, stop the sandbox
demo: sandbox-bin build
	./hack/demo.sh

## bench: Go benchmarks, then firedrill's start-up and etcd operations side by side with etcdctl/etcdutl on a 1 GiB etcd (ratios matter, not absolute times)
BENCH_SIZE ?= 1073741824
bench: sandbox-bin build
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 3x ./...
	$(GO) run ./hack/bench -size $(BENCH_SIZE) -bin $(BIN)
	$(GO) run ./hack/bench/serve -scenarios $(BENCH_SERVE_SCENARIOS) -cluster-scenarios $(BENCH_CLUSTER_SCENARIOS) -bin $(BIN)
	$(GO) run ./hack/bench/volumes -probe $(BIN)/firedrill-probe

## bench-serve: only the serve bench: memory, idle CPU and API latency with 1,000 scheduled scenarios; then 500 as Scenario resources in a sandbox beside files (status time, RSS ratio, idle status writes)
BENCH_SERVE_SCENARIOS ?= 1000
BENCH_CLUSTER_SCENARIOS ?= 500
bench-serve: sandbox-bin build
	$(GO) run ./hack/bench/serve -scenarios $(BENCH_SERVE_SCENARIOS) -cluster-scenarios $(BENCH_CLUSTER_SCENARIOS) -bin $(BIN)

## lint: gofmt and go vet
lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^hack/tools/')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

## clean: remove build outputs and the demo sandbox (stopping it first)
clean:
	-@[ -x $(BIN)/firedrill ] && $(BIN)/firedrill sandbox down --dir $(CURDIR)/.sandbox/demo >/dev/null 2>&1 || true
	rm -rf $(BIN) .sandbox

help:
	@grep -E '^## ' Makefile | sed 's/^## /  /'
