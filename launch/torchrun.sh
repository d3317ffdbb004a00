#!/usr/bin/env bash
# torchrun of one of the product's modules, on one node or many (used by train.sh, evaluate.sh).
#
# Usage: launch/torchrun.sh MODULE [module arguments...]
# Knobs: NPROC_PER_NODE (default: GPUs present, else 1), NNODES (1), NODE_RANK (0), MALLOC_ARENA_MAX (1),
#        RDZV_ENDPOINT (host:port of node 0; required when NNODES > 1), RDZV_ID, LOG_DIR, TORCHRUN,
#        MAX_RESTARTS (3: a failed worker group is restarted that often; trainer.train then resumes
#        from the run's last checkpoint by itself).
# Console shows local rank 0 only; every rank's output is kept under $LOG_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
module=${1:?usage: launch/torchrun.sh MODULE [args...]}; shift
gpus=$(nvidia-smi -L 2>/dev/null | wc -l || true)
NPROC_PER_NODE=${NPROC_PER_NODE:-$(( gpus > 0 ? gpus : 1 ))}
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
RDZV_ENDPOINT=${RDZV_ENDPOINT:-}
RDZV_ID=${RDZV_ID:-mpd}
MAX_RESTARTS=${MAX_RESTARTS:-3}
LOG_DIR=${LOG_DIR:-${TMPDIR:-/tmp}/mpd-torchrun-logs}
TORCHRUN=${TORCHRUN:-$( [ -x .venv/bin/torchrun ] && echo .venv/bin/torchrun || echo torchrun )}

if [ "$NNODES" -eq 1 ] && [ -z "$RDZV_ENDPOINT" ]; then
    rdzv=(--standalone)
else
    : "${RDZV_ENDPOINT:?multi-node needs RDZV_ENDPOINT=host:port of node 0}"
    rdzv=(--nnodes "$NNODES" --node-rank "$NODE_RANK" --rdzv-backend c10d
          --rdzv-endpoint "$RDZV_ENDPOINT" --rdzv-id "$RDZV_ID")
fi
mkdir -p "$LOG_DIR"
# One glibc heap arena per process from its first malloc: each thread's arena otherwise keeps
# its own high-water mark of freed batch memory (2 CPU ranks at 100k playlists: 1,934-1,999 MiB
# per rank, against 2,063-2,083 with the trainer's in-process cap alone and 2,220-2,260 with
# neither; bench/RESULTS.md).
export MALLOC_ARENA_MAX=${MALLOC_ARENA_MAX:-1}
exec "$TORCHRUN" "${rdzv[@]}" --nproc-per-node "$NPROC_PER_NODE" --max-restarts "$MAX_RESTARTS" \
    --log-dir "$LOG_DIR" --tee 3 --local-ranks-filter 0 \
    -m -- "$module" "$@"
