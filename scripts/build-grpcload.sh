#!/usr/bin/env bash
# Builds grpcload (bench/tools/grpcload.cc, the C++ gRPC load generator of the etcd comparison) into bench/bin/
# (git-ignored). Needs g++, pkg-config and libgrpc++-dev (installed with apt-get when missing and run as root).
# Idempotent: rebuilds only when the source is newer. Prints the binary's path on its last line.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SRC=${BENCH_SRC:-$ROOT/bench/tools}
OUT=${BENCH_BIN:-$ROOT/bench/bin}
[[ -f $SRC/grpcload.cc ]] || { echo "build-grpcload: no $SRC/grpcload.cc" >&2; exit 1; }
missing=()
for p in g++ pkg-config libgrpc++-dev; do
  dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  [[ $(id -u) -eq 0 ]] || { echo "build-grpcload: missing ${missing[*]} (run as root or install them)" >&2; exit 1; }
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
mkdir -p "$OUT"
if [[ ! -x $OUT/grpcload || $SRC/grpcload.cc -nt $OUT/grpcload ]]; then
  read -ra FLAGS <<<"$(pkg-config --cflags --libs grpc++)"
  g++ -O2 -std=c++17 -o "$OUT/grpcload.tmp" "$SRC/grpcload.cc" "${FLAGS[@]}"
  mv "$OUT/grpcload.tmp" "$OUT/grpcload"
fi
echo "$OUT/grpcload"
