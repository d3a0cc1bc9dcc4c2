#!/usr/bin/env bash
# Shows that the simulator finds each runtime bug of issue 15 when its fix is reverted.
#
#   scripts/sim-revert.sh <name> [--seeds N] [--from N] [--lease] [--no-nice]
#
# <name> is one of the patches in scripts/sim-reverts/ (1-proposal-seq, 2-read-ctx,
# 3-stall-ticks, 4-lease-fence; the number or the words alone also match). The patch is
# applied in a throw-away `git worktree` of HEAD under /tmp (node_modules symlinked), where
# `npm run sim -- --seeds N` runs (nice -n 10 unless --no-nice); the script prints the first
# failing seed and how many seeds it took, and removes the worktree on any exit.
# Exit status: 0 when the simulator found the bug, 1 when all N seeds passed, 2 on bad use.
# Uncommitted changes of this checkout are NOT in the worktree: commit first.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="$here/scripts/sim-reverts"
usage() {
  echo "sim-revert: $1" >&2
  echo "usage: scripts/sim-revert.sh <name> [--seeds N] [--from N] [--lease] [--no-nice]" >&2
  echo "names: $(cd "$dir" && ls ./*.patch | sed 's|^\./||; s|\.patch$||' | tr '\n' ' ')" >&2
  exit 2
}

[ $# -ge 1 ] || usage "missing the patch name"
name="$1"
shift
seeds=2000
from=1
lease=()
nice=(nice -n 10)
while [ $# -gt 0 ]; do
  case "$1" in
    --seeds | --from)
      [ $# -ge 2 ] && [[ "$2" =~ ^[0-9]+$ ]] && [ "$2" -gt 0 ] || usage "$1 needs a positive integer"
      if [ "$1" = --seeds ]; then seeds="$2"; else from="$2"; fi
      shift 2
      ;;
    --lease) lease=(--lease); shift ;;
    --no-nice) nice=(); shift ;;
    *) usage "unknown argument $1" ;;
  esac
done

matches=()
for p in "$dir"/*.patch; do
  b="$(basename "$p" .patch)"
  if [ "$b" = "$name" ] || [ "${b%%-*}" = "$name" ] || [ "${b#*-}" = "$name" ]; then matches+=("$p"); fi
done
[ ${#matches[@]} -eq 1 ] || usage "no single patch named '$name'"
patch="${matches[0]}"

wt="$(mktemp -d /tmp/raftkv-sim-revert.XXXXXX)"
cleanup() {
  git -C "$here" worktree remove --force "$wt" >/dev/null 2>&1 || rm -rf "$wt"
  git -C "$here" worktree prune >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

git -C "$here" worktree add --detach --quiet "$wt" HEAD
ln -s "$here/node_modules" "$wt/node_modules"
git -C "$wt" apply "$patch"
echo "sim-revert: $(basename "$patch") applied to $(git -C "$here" rev-parse --short HEAD) in $wt"
echo "sim-revert: npm run sim -- --seeds $seeds --from $from ${lease[*]:-}"

set +e
(cd "$wt" && "${nice[@]}" npm run --silent sim -- --seeds "$seeds" --from "$from" "${lease[@]}" --trace 40) 2>&1 | tee "$wt/sim.log"
status=${PIPESTATUS[0]}
set -e
failed="$(sed -n 's/^FAIL seed \([0-9]*\):.*/\1/p' "$wt/sim.log" | head -1)"
if [ -n "$failed" ]; then
  echo "sim-revert: $(basename "$patch" .patch): found at seed $failed, after $((failed - from + 1)) seeds${lease[*]:+ (lease mode)}"
  grep -m1 '^FAIL seed' "$wt/sim.log" | cut -c1-400
  exit 0
fi
if [ "$status" -ne 0 ]; then
  echo "sim-revert: the simulator exited with status $status without a failing seed" >&2
  exit 2
fi
echo "sim-revert: $(basename "$patch" .patch): NOT found in $seeds seeds from seed $from${lease[*]:+ (lease mode)}"
exit 1
