#!/usr/bin/env bash
# Builds a pinned Go tool once into a cache outside the repository and prints its path.
#   scripts/go-tool.sh fortio          -> .../fortio-v1.66.5/fortio
#   scripts/go-tool.sh kube-apiserver  -> .../kubernetes-v1.34.4/bin/kube-apiserver (also kube-controller-manager, kubectl)
#   scripts/go-tool.sh etcd            -> .../etcd-v3.6.5/bin/etcd
#   scripts/go-tool.sh gateway-api-crds -> .../gateway-api-v1.4.1 (the standard channel's CRD YAML files)
# The cache is ${ZTUNNEL_TS_CACHE:-$HOME/.cache/ztunnel-ts}/go; a tool is rebuilt only when its pinned
# version changes. Needs Go and the Go module proxy. Binaries are never committed.
set -euo pipefail
name=${1:?usage: go-tool.sh fortio|kube-apiserver|kube-controller-manager|kubectl|etcd|gateway-api-crds}
cache="${ZTUNNEL_TS_CACHE:-$HOME/.cache/ztunnel-ts}/go"
need_go() { command -v go >/dev/null 2>&1 || { echo "go-tool.sh: Go is not installed, cannot build $name" >&2; exit 3; }; }

# Kubernetes commands come from the k8s.io/kubernetes module, whose go.mod points its staging modules at
# local paths: a wrapper module pins each of them to the matching v0.x release instead.
KUBE_VERSION=v1.34.4
KUBE_STAGING="api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider
  cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api cri-client
  csi-translation-lib dynamic-resource-allocation endpointslice externaljwt kms kube-aggregator
  kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics mount-utils
  pod-security-admission sample-apiserver sample-cli-plugin sample-controller"
ETCD_VERSION=v3.6.5

build_kube() {
  local dir="$cache/kubernetes-$KUBE_VERSION" staging="v0.${KUBE_VERSION#v1.}"
  if [ ! -x "$dir/bin/kube-apiserver" ] || [ ! -x "$dir/bin/kube-controller-manager" ] || [ ! -x "$dir/bin/kubectl" ]; then
    need_go
    mkdir -p "$dir/bin"
    {
      echo "module ztunnel-ts/kube-tools"
      echo "go 1.24.0"
      echo "require k8s.io/kubernetes $KUBE_VERSION"
      for m in $KUBE_STAGING; do echo "replace k8s.io/$m => k8s.io/$m $staging"; done
    } >"$dir/go.mod"
    (cd "$dir" && GOFLAGS=-mod=mod go get "k8s.io/kubernetes/cmd/kube-apiserver@$KUBE_VERSION" \
      "k8s.io/kubernetes/cmd/kube-controller-manager@$KUBE_VERSION" "k8s.io/kubernetes/cmd/kubectl@$KUBE_VERSION" &&
      GOFLAGS=-mod=mod go build -trimpath -o bin/ k8s.io/kubernetes/cmd/kube-apiserver \
        k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl) >&2
  fi
  echo "$dir/bin/$1"
}

# etcd's server module also points its sibling modules at local paths.
build_etcd() {
  local dir="$cache/etcd-$ETCD_VERSION"
  if [ ! -x "$dir/bin/etcd" ]; then
    need_go
    mkdir -p "$dir/bin"
    {
      echo "module ztunnel-ts/etcd-tools"
      echo "go 1.24"
      echo "require go.etcd.io/etcd/server/v3 $ETCD_VERSION"
      for m in api/v3 client/pkg/v3 client/v3 pkg/v3; do echo "replace go.etcd.io/etcd/$m => go.etcd.io/etcd/$m $ETCD_VERSION"; done
    } >"$dir/go.mod"
    (cd "$dir" && GOFLAGS=-mod=mod go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" &&
      GOFLAGS=-mod=mod go build -trimpath -o bin/etcd go.etcd.io/etcd/server/v3) >&2
  fi
  echo "$dir/bin/etcd"
}

# The Gateway API CRDs (Gateway, HTTPRoute) ship in the sigs.k8s.io/gateway-api module's config/ tree:
# the module proxy serves them with checksums, so no download site is needed.
GATEWAY_API_VERSION=v1.4.1
gateway_api_crds() {
  local dir="$cache/gateway-api-$GATEWAY_API_VERSION" src
  if [ ! -s "$dir/gateway.networking.k8s.io_httproutes.yaml" ]; then
    need_go
    src=$(cd "${TMPDIR:-/tmp}" && GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    [ -d "$src/config/crd/standard" ] || { echo "go-tool.sh: no config/crd/standard in sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" >&2; exit 1; }
    mkdir -p "$dir"
    cp "$src"/config/crd/standard/gateway.networking.k8s.io_{gatewayclasses,gateways,httproutes}.yaml "$dir/"
    chmod u+w "$dir"/*.yaml
  fi
  echo "$dir"
}

case "$name" in
  # fortio v1.67 and later need grol.io/grol, which the module proxy here refuses (403); v1.66.5 does not.
  fortio) module=fortio.org/fortio; version=v1.66.5; bin=fortio ;;
  kube-apiserver|kube-controller-manager|kubectl) build_kube "$name"; exit 0 ;;
  etcd) build_etcd; exit 0 ;;
  gateway-api-crds) gateway_api_crds; exit 0 ;;
  *) echo "go-tool.sh: unknown tool $name" >&2; exit 2 ;;
esac
dir="$cache/$name-$version"
if [ ! -x "$dir/$bin" ]; then
  need_go
  mkdir -p "$dir"
  # Outside any module, so the pinned version alone decides what is built.
  (cd "$dir" && GOBIN="$dir" GOFLAGS=-mod=mod go install "$module@$version") >&2
fi
echo "$dir/$bin"
