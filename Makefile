# istio-operator: build, test and run locally.
#
# Newcomers need two commands: `make run` (local cluster + operator on a
# sample Istio resource) and `make test` (unit and integration tests).

SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

GO        ?= go
ROOT      := $(CURDIR)
TOOLS_BIN ?= $(ROOT)/bin/tools
export TOOLS_BIN
CLUSTER   ?= istio-operator
NAMESPACE ?= kyma-system
COMMIT    := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -X main.commit=$(COMMIT)
# GO_TAGS=experimental builds the experimental operator, which installs the
# Istio resource's spec.experimental features instead of refusing them.
GO_TAGS   ?=
# Integration test packages each start their own cluster; two at a time fit
# a 2-core machine.
TEST_PARALLEL ?= 2
TEST_TIMEOUT  ?= 40m

.PHONY: help
help: ## List the targets.
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

##@ Build

.PHONY: build
build: ## Build bin/istio-operator (GO_TAGS=experimental: the experimental build).
	$(GO) build -tags "$(GO_TAGS)" -ldflags "$(LDFLAGS)" -o bin/istio-operator ./cmd/istio-operator

# The kustomization make manifest renders; deploy/overlays/servicemonitor adds
# a ServiceMonitor, deploy/overlays/with-namespace the kyma-system Namespace.
MANIFEST_DIR ?= deploy/base

.PHONY: manifest
manifest: tools ## Render the deployment manifest (MANIFEST_DIR, default deploy/base) into bin/istio-operator.yaml.
	@mkdir -p bin
	$(TOOLS_BIN)/kubectl kustomize $(MANIFEST_DIR) > bin/istio-operator.yaml.tmp
	@mv bin/istio-operator.yaml.tmp bin/istio-operator.yaml
	@echo "wrote bin/istio-operator.yaml; it holds no Namespace: create kyma-system first (kubectl apply -f deploy/namespace/namespace.yaml), then kubectl apply --server-side -f bin/istio-operator.yaml"

# The image's repository (registry/name, or registry/name:tag for push).
# Empty: the images entry of deploy/base/kustomization.yaml.
IMAGE ?=
IMAGE_FLAG = $(if $(IMAGE),--image $(IMAGE))

.PHONY: image
image: ## Build the OCI image (linux/amd64, linux/arm64) without Docker: bin/image (layout), bin/istio-operator-image.tar, SBOMs in bin/.
	$(GO) run ./hack/image build --out bin --commit $(COMMIT) $(IMAGE_FLAG)

.PHONY: push
push: ## Push bin/image (both platforms) to IMAGE=registry/name[:tag] with your docker/podman login; prints name@sha256:...
	@if [[ -z "$(IMAGE)" ]]; then echo "usage: make push IMAGE=registry/name[:tag]"; exit 2; fi
	$(GO) run ./hack/image push --layout bin/image $(IMAGE_FLAG)

.PHONY: release
release: tools image ## Build the image; write bin/istio-operator.yaml pinned by digest (IMAGE overrides the name), bin/SHA256SUMS, bin/RELEASE_NOTES.md.
	$(GO) run ./hack/image release --dir bin --kubectl $(TOOLS_BIN)/kubectl $(IMAGE_FLAG)

.PHONY: tools
tools: ## Build the pinned local-cluster and code-generation tools into bin/tools (idempotent).
	bash hack/build-tools.sh

.PHONY: generate
generate: tools ## Regenerate deepcopy, clients, listers, informers, apply configurations and the CRD.
	bash hack/update-codegen.sh

##@ Test

.PHONY: test
test: tools test-unit test-integration ## Run unit and integration tests (builds the tools first).

.PHONY: test-unit
test-unit: ## Run unit tests.
	$(GO) test -count=1 ./pkg/... ./cmd/... ./hack/...

# test/image compiles the operator for two platforms with -trimpath, which
# shares nothing with the other builds' cache: it runs alone, after the
# others, so that its compiling does not slow their timed steps. The
# experimental build's test is the one package built with -tags experimental.
.PHONY: test-integration
test-integration: tools ## Run the integration tests against real local clusters, the experimental build's, then the image test.
	$(GO) test -count=1 -p $(TEST_PARALLEL) -timeout $(TEST_TIMEOUT) $$($(GO) list ./test/... | grep -v '/test/image$$')
	$(GO) test -count=1 -tags experimental -timeout $(TEST_TIMEOUT) ./test/integration/experimental
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./test/image

# The fault-injection and bad-input suites (docs/reliability.md). They live
# under test/, so make test runs them too.
.PHONY: test-reliability
test-reliability: tools ## Run the reliability suites: operator kills, API server outage, leader failover, conflicts, bad input.
	$(GO) test -count=1 -p 1 -timeout $(TEST_TIMEOUT) ./test/reliability/...

.PHONY: verify
verify: tools ## Check formatting, vet, that generated code and the CRD are fresh, and the package layers.
	@out="$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go'))"; \
	  if [[ -n "$$out" ]]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	bash hack/verify-codegen.sh
	bash hack/verify-layers.sh

# staticcheck runs at a pinned release, outside the module's dependencies.
STATICCHECK_VERSION ?= v0.8.2

.PHONY: lint
lint: ## Run staticcheck on the code we write (generated code excluded).
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) $$($(GO) list ./... | grep -v /pkg/generated/)

.PHONY: bench
bench: tools build ## Measure the proxy sidecar restart wave on a local cluster; flags via BENCH_FLAGS (docs/performance.md).
	$(GO) run ./test/bench --operator-binary bin/istio-operator $(BENCH_FLAGS)

.PHONY: screenshot
screenshot: tools ## Run the metrics test with Prometheus; save docs/images/prometheus-graph.png (needs chromium and PROMETHEUS_BINARY, a Prometheus release with its web UI) and bin/metrics-sample.txt.
	@mkdir -p docs/images bin
	METRICS_SCREENSHOT=$(ROOT)/docs/images/prometheus-graph.png METRICS_SCRAPE=$(ROOT)/bin/metrics-sample.txt \
	  $(GO) test -count=1 -timeout 10m -run TestMetricsWithPrometheus ./test/integration/metrics

##@ Local cluster

.PHONY: cluster-up
cluster-up: tools ## Start (or reuse) the local cluster and print its kubeconfig.
	bash hack/cluster.sh up --name $(CLUSTER)

.PHONY: cluster-down
cluster-down: ## Delete the local cluster; no process is left behind.
	bash hack/cluster.sh down --name $(CLUSTER)

.PHONY: run
run: tools build cluster-up ## Run the operator in the foreground on the local cluster with a sample Istio resource.
	bash hack/run.sh --name $(CLUSTER) --namespace $(NAMESPACE)

.PHONY: check-run
check-run: ## Check make run: on a fresh cluster of its own, the sample Istio resource becomes Ready; then clean up.
	bash hack/check-run.sh

.PHONY: clean
clean: ## Remove build output (keeps the Go build cache).
	rm -rf bin .cache
