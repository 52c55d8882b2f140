# officialaccount-operator. `make help` lists the targets.

K8S_VERSION ?= 1.37.2
CONTROLLER_TOOLS_VERSION ?= v0.23.0
HELM_VERSION ?= v4.3.1
IMG ?= ghcr.io/chat-operators/officialaccount-operator:dev

# Everything the Makefile installs lives under bin/ (git-ignored).
LOCALBIN := $(CURDIR)/bin
CONTROLLER_GEN := $(LOCALBIN)/controller-gen
HELM := $(LOCALBIN)/helm
ENVTEST_ASSETS := $(LOCALBIN)/k8s/$(K8S_VERSION)
# Every package of the module, so that a new one cannot be left out of vet (hack/test.sh
# tests ./... too; bin/.scratch holds modules of its own, which ./... skips).
GO_PACKAGES := ./...

# One setting for every build (vet, the tests, the binaries they build, the tools, the
# envtest binaries), so that Go's build cache compiles each shared package once.
export CGO_ENABLED ?= 0
# hack/tools.sh builds the tools in one scratch module beside this one's requirements.
TOOLS := LOCALBIN=$(LOCALBIN) K8S_VERSION=$(K8S_VERSION) ENVTEST_ASSETS=$(ENVTEST_ASSETS) \
	CONTROLLER_TOOLS_VERSION=$(CONTROLLER_TOOLS_VERSION) HELM_VERSION=$(HELM_VERSION) hack/tools.sh

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec
.DEFAULT_GOAL := help

##@ General

.PHONY: help
help: ## Show the targets, one line each.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate the CRDs and RBAC in config/ and the chart from the API types and markers.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd paths="./api/...;./controllers/...;./resync/..." output:crd:artifacts:config=config/crd/bases
	hack/chart-crds.sh

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate the API types' DeepCopy methods.
	$(CONTROLLER_GEN) object paths="./api/..."

.PHONY: fmt
fmt: ## Run gofmt on the code.
	@gofmt -l -w $(shell find . -name '*.go' -not -path './bin/*')

.PHONY: vet
vet: ## Run go vet.
	go vet $(GO_PACKAGES)

.PHONY: test
test: ## Run every test against a real kube-apiserver (envtest); builds what it needs.
	@# The tools first, in one build whose packages vet and the tests then reuse; apt
	@# installs the servers meanwhile.
	@$(MAKE) --no-print-directory -j2 -Oline tools test-servers
	@$(MAKE) --no-print-directory -j1 manifests generate fmt vet
	KUBEBUILDER_ASSETS=$(ENVTEST_ASSETS) HELM=$(HELM) hack/test.sh

.PHONY: tools
tools: ## Fetch or build controller-gen, helm, and kube-apiserver, etcd and kubectl for envtest, into bin/.
	$(TOOLS) controller-gen helm envtest

.PHONY: envtest
envtest: ## Fetch or build kube-apiserver, etcd and kubectl for the tests into bin/k8s.
	$(TOOLS) envtest

.PHONY: test-servers
test-servers: ## Make sure the servers the tests start are here: Debian's postgresql, redis-server and mariadb-server (one apt call for those missing).
	@missing=""; \
	  { command -v initdb || ls /usr/lib/postgresql/*/bin/initdb; } >/dev/null 2>&1 || missing="$$missing postgresql"; \
	  command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	  { command -v mariadbd || test -x /usr/sbin/mariadbd; } >/dev/null 2>&1 || missing="$$missing mariadb-server"; \
	  if [ -n "$$missing" ]; then \
	    echo ">> installing Debian's$$missing for the tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  fi

.PHONY: bench
bench: envtest ## Measure ingest, delivery, latency and memory against the API server's own ceiling.
	KUBEBUILDER_ASSETS=$(ENVTEST_ASSETS) go run ./hack/bench $(BENCH_ARGS)

##@ Build

.PHONY: build
build: ## Build the manager binary into bin/manager.
	CGO_ENABLED=0 go build -trimpath -o $(LOCALBIN)/manager ./cmd

.PHONY: run
run: envtest ## Run the operator: on the cluster of $KUBECONFIG, or on a local control plane it starts.
	KUBEBUILDER_ASSETS=$(ENVTEST_ASSETS) go run ./hack/devenv $(RUN_ARGS)

.PHONY: docker-build
docker-build: ## Build the container image (needs a container engine).
	docker build -t $(IMG) .

##@ Deployment

.PHONY: install
install: manifests ## Install the CRDs into the cluster of $KUBECONFIG.
	kubectl apply --server-side -f config/crd/bases

.PHONY: uninstall
uninstall: ## Remove the CRDs (and every stored event) from the cluster of $KUBECONFIG.
	kubectl delete --ignore-not-found -f config/crd/bases

.PHONY: deploy
deploy: manifests ## Deploy the operator with kustomize to the cluster of $KUBECONFIG.
	kubectl apply --server-side -k config/default

$(HELM):
	$(TOOLS) helm

.PHONY: helm-lint
helm-lint: $(HELM) ## Lint the Helm chart.
	$(HELM) lint charts/officialaccount-operator --strict -f charts/officialaccount-operator/ci/default-values.yaml

$(CONTROLLER_GEN):
	$(TOOLS) controller-gen
