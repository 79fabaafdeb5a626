#!/usr/bin/env bash
# Builds capture.bpf.o reproducibly (no checkout path inside), so CI can compare it with the committed one.
# Usage: bpf/build.sh [OUTPUT]   (default: bpf/capture.bpf.o)
set -euo pipefail
cd "$(dirname "$0")"
out="${1:-capture.bpf.o}"
clang -O2 -g -target bpf -Wall -Werror -I/usr/include/x86_64-linux-gnu \
  -fdebug-prefix-map="$PWD"=. -c capture.bpf.c -o "$out"
