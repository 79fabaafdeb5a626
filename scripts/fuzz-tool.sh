#!/usr/bin/env bash
# Builds the pinned coverage-guided fuzzer once into a cache outside the repository and prints its
# directory (the one holding node_modules/@jazzer.js and node_modules/esbuild).
#
# Jazzer.js 4's prebuilt addon needs glibc 2.38 and GCC 13's libstdc++, and its source is not on npm;
# 2.1.0 ships its C++ source, but its build downloads Jazzer's fork of compiler-rt from GitHub. So the
# addon is compiled here against Debian's own libFuzzer (libclang-rt-14-dev), with
# fuzz/jazzer/upstream-libfuzzer.patch and fuzz/jazzer/compat/ covering the fork's few additions.
# The cache directory is named after a hash of those inputs, so a change to any of them rebuilds it.
# Needs clang++-14, libclang-rt-14-dev, patch and Node's headers (.ci/run installs them).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
src="$repo/fuzz/jazzer"
key=$(cat "$src/package.json" "$src/package-lock.json" "$src/upstream-libfuzzer.patch" "$src"/compat/*.cpp \
  "$src"/compat/fuzzer/*.h "$0" | sha256sum | cut -c1-12)
dir="${ZTUNNEL_TS_CACHE:-$HOME/.cache/ztunnel-ts}/fuzz/jazzer.js-2.1.0-$key"
addon="$dir/node_modules/@jazzer.js/fuzzer/build/Release/jazzerjs.node"

if [ ! -f "$addon" ]; then
  cxx=$(command -v clang++-14 || command -v clang++ || true)
  libfuzzer=$(ls /usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer_no_main-x86_64.a 2>/dev/null | head -1 || true)
  node_inc=$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")/include/node
  [ -n "$cxx" ] || { echo "fuzz-tool.sh: no clang++ (apt-get install clang-14)" >&2; exit 3; }
  [ -n "$libfuzzer" ] || { echo "fuzz-tool.sh: no libFuzzer (apt-get install libclang-rt-14-dev)" >&2; exit 3; }
  [ -f "$node_inc/node_api.h" ] || { echo "fuzz-tool.sh: no Node headers in $node_inc" >&2; exit 3; }
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
  cp "$src/package.json" "$src/package-lock.json" "$dir.tmp/"
  # Scripts off: the fuzzer's install script would try GitHub, then a build that downloads from it.
  (cd "$dir.tmp" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) >&2
  pkg="$dir.tmp/node_modules/@jazzer.js/fuzzer"
  patch -s -p1 -d "$pkg" <"$src/upstream-libfuzzer.patch"
  mkdir -p "$pkg/build/Release"
  # -DNAPI_VERSION=4 and C++ exceptions as the package's own CMakeLists.txt builds it.
  "$cxx" -std=c++17 -O2 -fPIC -shared -w -DNAPI_VERSION=4 -DNAPI_CPP_EXCEPTIONS -fexceptions \
    -I "$src/compat" -I "$node_inc" -I "$dir.tmp/node_modules/node-addon-api" \
    "$pkg"/*.cpp "$pkg"/shared/*.cpp "$src/compat/upstream-libfuzzer.cpp" \
    -Wl,--whole-archive "$libfuzzer" -Wl,--no-whole-archive -lstdc++ -lpthread \
    -o "$pkg/build/Release/jazzerjs.node" >&2
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
fi
echo "$dir"
