#!/usr/bin/env bash
# Provides the programs that `make` runs and this module does not build itself:
#   controller-gen   -> bin/controller-gen
#   helm             -> bin/helm
#   envtest          -> kube-apiserver, etcd and kubectl in bin/k8s/<version>
# Usage: hack/tools.sh <program>...   (those already there are left alone)
#
# They are built from one scratch module, bin/.scratch/tools, that requires each of them
# and every module this one requires. Go then selects one version of each module they
# share with each other and with the tests (client-go, api, apimachinery, x/net,
# protobuf, ...), the tests' own unless a tool needs a newer one, so that its build cache
# compiles each shared package once for all of them, for `go vet` and for the tests.
# Installed one by one, at each tool's own versions, the same packages were compiled up
# to five times over, most of a cold `make test`.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
LOCALBIN="${LOCALBIN:-$ROOT/bin}"
K8S_VERSION="${K8S_VERSION:-1.37.2}"
ENVTEST_ASSETS="${ENVTEST_ASSETS:-$LOCALBIN/k8s/$K8S_VERSION}"
CONTROLLER_TOOLS_VERSION="${CONTROLLER_TOOLS_VERSION:-v0.23.0}"
HELM_VERSION="${HELM_VERSION:-v4.3.1}"
SETUP_ENVTEST_VERSION="${SETUP_ENVTEST_VERSION:-v0.25.1}"
# The etcd that k8s.io/kubernetes itself requires: one version in the scratch module.
ETCD_VERSION="${ETCD_VERSION:-3.7.0}"
# The Makefile's setting, which the tests build with too: the same cache entries.
export CGO_ENABLED="${CGO_ENABLED:-0}"
SCRATCH="$LOCALBIN/.scratch/tools"

output_of() {
  case "$1" in
  controller-gen | helm) echo "$LOCALBIN/$1" ;;
  kube-apiserver | kubectl | etcd) echo "$ENVTEST_ASSETS/$1" ;;
  esac
}

package_of() {
  case "$1" in
  controller-gen) echo sigs.k8s.io/controller-tools/cmd/controller-gen ;;
  helm) echo helm.sh/helm/v4/cmd/helm ;;
  kube-apiserver) echo k8s.io/kubernetes/cmd/kube-apiserver ;;
  kubectl) echo k8s.io/kubernetes/cmd/kubectl ;;
  etcd) echo go.etcd.io/etcd/server/v3 ;;
  esac
}

# programs expands the arguments into program names, and refuses one it does not know.
programs() {
  local name
  for name in "$@"; do
    case "$name" in
    envtest) echo kube-apiserver etcd kubectl ;;
    controller-gen | helm | kube-apiserver | etcd | kubectl) echo "$name" ;;
    *) echo "hack/tools.sh: unknown program $name (controller-gen, helm, envtest, kube-apiserver, etcd, kubectl)" >&2 && return 2 ;;
    esac
  done
}

# missing lists those of the programs that are not there yet.
missing() {
  local program
  for program in "$@"; do
    [[ -x "$(output_of "$program")" ]] || echo "$program"
  done
}

# envtest_download puts setup-envtest's binaries in place where the network reaches its
# bucket, which is faster than building them. Each is copied beside its place and then
# renamed, so that an interrupted copy never passes for a binary.
envtest_download() {
  local assets binary
  GOBIN="$LOCALBIN" go install "sigs.k8s.io/controller-runtime/tools/setup-envtest@$SETUP_ENVTEST_VERSION" 2>/dev/null &&
    assets="$(timeout 120 "$LOCALBIN/setup-envtest" use "$K8S_VERSION" --bin-dir "$LOCALBIN/k8s/.setup-envtest" -p path 2>/dev/null)" &&
    [[ -x "$assets/kube-apiserver" ]] || return 1
  mkdir -p "$ENVTEST_ASSETS"
  for binary in kube-apiserver etcd kubectl; do
    cp "$assets/$binary" "$ENVTEST_ASSETS/.$binary.partial"
    mv "$ENVTEST_ASSETS/.$binary.partial" "$ENVTEST_ASSETS/$binary"
  done
}

# our_requirements is this module's go.mod requirements, one "require" line each.
our_requirements() {
  (cd "$ROOT" && go mod edit -json) | awk '
    /^\t"Require": \[/ { inside = 1; next }
    inside && /^\t\]/ { inside = 0 }
    inside && /"Path":/ { gsub(/[",]/, "", $2); path = $2 }
    inside && /"Version":/ { gsub(/[",]/, "", $2); print "require " path " " $2 }'
}

# scratch_go_mod is the scratch module's go.mod.
scratch_go_mod() {
  local kubernetes_mod requirements
  kubernetes_mod="$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  [[ -n "$kubernetes_mod" ]] || return 1
  requirements="$(our_requirements)"
  [[ -n "$requirements" ]] || return 1
  printf 'module scratch/tools\n\ngo 1.26\n\n'
  printf 'require k8s.io/kubernetes v%s\n' "$K8S_VERSION"
  printf 'require go.etcd.io/etcd/server/v3 v%s\n' "$ETCD_VERSION"
  printf 'require helm.sh/helm/v4 %s\n' "$HELM_VERSION"
  printf 'require sigs.k8s.io/controller-tools %s\n' "$CONTROLLER_TOOLS_VERSION"
  echo "$requirements"
  # k8s.io/kubernetes replaces its staging modules with local folders, which a module
  # that depends on it cannot see: point each at its published version instead.
  grep -o 'k8s.io/[a-z0-9-]* => ./staging' "$kubernetes_mod" | awk '{print $1}' | sort -u |
    while read -r m; do echo "replace $m => $m v0.${K8S_VERSION#1.}"; done
}

# prepare_scratch writes the scratch module, unless one with the same inputs is there.
# No `go mod tidy`: the build adds what it lacks and downloads only the modules whose
# packages it compiles, and tidy would drop this module's requirements, lowering some.
prepare_scratch() {
  local wanted
  wanted="$(scratch_go_mod)" || {
    echo "hack/tools.sh: could not read the requirements of this module or of k8s.io/kubernetes v$K8S_VERSION" >&2
    return 1
  }
  if [[ -f "$SCRATCH/go.mod.in" && "$(cat "$SCRATCH/go.mod.in")" == "$wanted" ]]; then
    return
  fi
  rm -rf "$SCRATCH" && mkdir -p "$SCRATCH"
  printf '%s\n' "$wanted" >"$SCRATCH/go.mod"
  printf '%s\n' "$wanted" >"$SCRATCH/go.mod.in"
}

# Binaries built from modules carry no version unless the linker stamps one: the API server
# would report v0.0.0, which helm refuses for charts with a kubeVersion, and controller-gen
# would write "(devel)" into the CRDs' annotations.
version_ldflags() {
  local pkg v="v$K8S_VERSION" minor="${K8S_VERSION#*.}"
  minor="${minor%%.*}"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    printf -- '-X %s.gitVersion=%s -X %s.gitMajor=1 -X %s.gitMinor=%s -X %s.gitTreeState=clean ' "$pkg" "$v" "$pkg" "$pkg" "$minor" "$pkg"
  done
  printf -- '-X sigs.k8s.io/controller-tools/pkg/version.version=%s ' "$CONTROLLER_TOOLS_VERSION"
  printf -- '-X helm.sh/helm/v4/internal/version.version=%s ' "$HELM_VERSION"
}

asked="$(programs "$@")"
mkdir -p "$LOCALBIN/.scratch"
if command -v flock >/dev/null; then
  # One build at a time: two would compile the same packages side by side.
  exec 9>"$LOCALBIN/.scratch/tools.lock"
  flock 9
fi
# shellcheck disable=SC2086 # one word per program
wanted=($(missing $asked))
[[ ${#wanted[@]} -gt 0 ]] || exit 0
if [[ " ${wanted[*]} " == *" kube-apiserver "* ]] && envtest_download; then
  wanted=($(missing "${wanted[@]}"))
  [[ ${#wanted[@]} -gt 0 ]] || exit 0
fi

echo ">> building ${wanted[*]} from Go modules in one build (kube-apiserver: about 10 minutes cold on 2 cores)" >&2
prepare_scratch
out="$SCRATCH/out"
rm -rf "$out" && mkdir -p "$out"
packages=()
for program in "${wanted[@]}"; do packages+=("$(package_of "$program")"); done
# One `go build` for them all, so that no package is compiled twice side by side; -s -w:
# no symbol table or DWARF, as release binaries, which links faster.
(cd "$SCRATCH" && GOFLAGS=-mod=mod go build -ldflags "-s -w $(version_ldflags)" -o "$out/" "${packages[@]}")
for program in "${wanted[@]}"; do
  package="$(package_of "$program")"
  built="$out/${package##*/}"
  [[ "$program" != etcd ]] || built="$out/server" # go.etcd.io/etcd/server/v3 builds "server"
  target="$(output_of "$program")"
  mkdir -p "$(dirname "$target")"
  mv "$built" "$target"
done
