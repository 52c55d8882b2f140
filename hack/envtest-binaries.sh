#!/usr/bin/env bash
# Provides kube-apiserver, etcd and kubectl for envtest under $1 (default bin/k8s/<version>).
#
# setup-envtest downloads these from a bucket that machines with only a Go module proxy
# cannot reach, so when they are not cached we build them from Go modules, pinned to the
# versions that match the k8s.io libraries in go.mod. A cold build takes ~10 minutes on
# 2 cores; Go's build cache makes later builds take seconds.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-3.6.16}"
SETUP_ENVTEST_VERSION="${SETUP_ENVTEST_VERSION:-v0.25.1}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="${1:-$ROOT/bin/k8s/$K8S_VERSION}"

if [[ -x "$DEST/kube-apiserver" && -x "$DEST/etcd" && -x "$DEST/kubectl" ]]; then
  exit 0
fi
mkdir -p "$DEST"

# First choice: setup-envtest's download, where the network allows it.
if GOBIN="$ROOT/bin" go install "sigs.k8s.io/controller-runtime/tools/setup-envtest@$SETUP_ENVTEST_VERSION" 2>/dev/null &&
  assets="$(timeout 120 "$ROOT/bin/setup-envtest" use "$K8S_VERSION" --bin-dir "$ROOT/bin/k8s/.setup-envtest" -p path 2>/dev/null)" &&
  [[ -x "$assets/kube-apiserver" ]]; then
  cp "$assets/kube-apiserver" "$assets/etcd" "$assets/kubectl" "$DEST/"
  echo "$DEST"
  exit 0
fi
echo ">> setup-envtest could not download the binaries; building them instead" >&2

# Binaries built from modules carry no version unless the linker stamps one; without it
# the API server reports v0.0.0 and clients such as helm refuse charts with a kubeVersion.
k8s_version_ldflags() {
  local pkg v="v$K8S_VERSION" minor="${K8S_VERSION#*.}"
  minor="${minor%%.*}"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    printf -- '-X %s.gitVersion=%s -X %s.gitMajor=1 -X %s.gitMinor=%s -X %s.gitTreeState=clean ' "$pkg" "$v" "$pkg" "$pkg" "$minor" "$pkg"
  done
}

# Builds a Go package in a scratch module so that the project's own go.mod stays small.
build_in_scratch_module() { # <name> <go.mod body> <package> <output> [ldflags]
  local dir="$ROOT/bin/.scratch/$1"
  rm -rf "$dir" && mkdir -p "$dir"
  printf '%s\n' "$2" >"$dir/go.mod"
  printf 'package tools\n\nimport _ "%s"\n' "$3" >"$dir/tools.go"
  (cd "$dir" && GOFLAGS=-mod=mod go mod tidy >/dev/null 2>&1 || true)
  (cd "$dir" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -ldflags "${5:-}" -o "$4" "$3")
}

kubernetes_go_mod() {
  local modfile
  modfile="$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  echo "module scratch/kubernetes"
  echo
  echo "go 1.26"
  echo
  echo "require k8s.io/kubernetes v$K8S_VERSION"
  echo
  # k8s.io/kubernetes replaces its staging modules with local folders, which a module
  # that depends on it cannot see: point each at its published version instead.
  grep -o 'k8s.io/[a-z0-9-]* => ./staging' "$modfile" | awk '{print $1}' | sort -u |
    while read -r m; do echo "replace $m => $m v0.${K8S_VERSION#1.}"; done
}

if [[ ! -x "$DEST/kube-apiserver" || ! -x "$DEST/kubectl" ]]; then
  echo ">> building kube-apiserver and kubectl v$K8S_VERSION from Go modules (about 10 minutes cold)" >&2
  mod="$(kubernetes_go_mod)"
  build_in_scratch_module kubernetes "$mod" k8s.io/kubernetes/cmd/kube-apiserver "$DEST/kube-apiserver" "$(k8s_version_ldflags)"
  (cd "$ROOT/bin/.scratch/kubernetes" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -ldflags "$(k8s_version_ldflags)" -o "$DEST/kubectl" k8s.io/kubernetes/cmd/kubectl)
fi

if [[ ! -x "$DEST/etcd" ]]; then
  echo ">> building etcd v$ETCD_VERSION from Go modules" >&2
  mod="$(printf 'module scratch/etcd\n\ngo 1.26\n\nrequire go.etcd.io/etcd/server/v3 v%s\n' "$ETCD_VERSION")"
  build_in_scratch_module etcd "$mod" go.etcd.io/etcd/server/v3 "$DEST/etcd"
fi
echo "$DEST"
