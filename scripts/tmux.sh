#!/usr/bin/env bash
# npm run tmux: a 3-node cluster started with seed 004's own command lines, one tmux window
# per node (its log), plus a client window, for those who like to watch the nodes side by side.
#   npm run tmux -- [--session raftkv] [--base-port 50051] [--data-dir state-tmux] [--detach]
# Each node: raftkv serve --node-id nodeI --port P --peers <the other two client ports>
# (the peer port is P + 1000). Ctrl-b n / Ctrl-b p switch windows; `tmux kill-session -t NAME` stops all.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SESSION=raftkv BASE=50051 DATA=state-tmux DETACH=0
while (($#)); do
  case $1 in
    --session) SESSION=${2:?--session needs a name}; shift 2 ;;
    --base-port) BASE=${2:?--base-port needs a port}; shift 2 ;;
    --data-dir) DATA=${2:?--data-dir needs a directory}; shift 2 ;;
    --detach) DETACH=1; shift ;;
    *) echo "npm run tmux: unknown flag $1 (flags: --session NAME --base-port P --data-dir DIR --detach)" >&2; exit 2 ;;
  esac
done
[[ $BASE =~ ^[0-9]+$ ]] && ((BASE > 0 && BASE + 1002 < 65536)) || { echo "npm run tmux: --base-port must be a port below 64533, got $BASE" >&2; exit 2; }
command -v tmux >/dev/null || { echo "npm run tmux: tmux is not installed (apt-get install tmux)" >&2; exit 3; }
if tmux has-session -t "$SESSION" 2>/dev/null; then
  echo "npm run tmux: a tmux session named $SESSION exists already (tmux attach -t $SESSION, or --session NAME)" >&2; exit 1
fi
mkdir -p "$DATA"
DATA=$(cd "$DATA" && pwd)
RAFTKV="node --import tsx $ROOT/src/cli/main.ts"
# The nodes prove the per-user peer secret (RAFTKV_HOME, default ~/.config/raftkv): a tmux server
# started earlier would not pass on this shell's RAFTKV_HOME, so it is given on the command line.
[[ -n ${RAFTKV_HOME:-} ]] && RAFTKV="RAFTKV_HOME=$(printf %q "$(cd "$RAFTKV_HOME" 2>/dev/null && pwd || echo "$RAFTKV_HOME")") $RAFTKV"
ports=("$BASE" "$((BASE + 1))" "$((BASE + 2))")
for i in 0 1 2; do
  id="node$((i + 1))" port=${ports[$i]} peers=()
  for j in 0 1 2; do ((j == i)) || peers+=("localhost:${ports[$j]}"); done
  cmd="cd $ROOT && $RAFTKV serve --node-id $id --port $port --peers $(IFS=,; echo "${peers[*]}") --data-dir $DATA/$id --log-format pretty; echo '$id exited'; read -r"
  if ((i == 0)); then tmux new-session -d -s "$SESSION" -n "$id" "$cmd"; else tmux new-window -t "$SESSION" -n "$id" "$cmd"; fi
done
endpoints=$(IFS=,; echo "${ports[*]/#/127.0.0.1:}")
tmux new-window -t "$SESSION" -n client "cd $ROOT && echo 'Try: npx raftkv put foo bar --endpoints $endpoints'; echo '     npx raftkv status --endpoints $endpoints'; exec \$SHELL"
echo "tmux session $SESSION: windows node1 node2 node3 client; API on $endpoints; data in $DATA"
if ((DETACH)) || [[ ! -t 1 ]]; then echo "attach with: tmux attach -t $SESSION"; else exec tmux attach -t "$SESSION"; fi
