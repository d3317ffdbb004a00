#!/usr/bin/env bash
# Export embeddings, then run the full-catalogue evaluation under torchrun (playlists sharded
# across ranks; sums and counts reduced, so N processes give the numbers of one).
#
# Usage (extra arguments go to trainer.evaluate, e.g. --methods gnn,itemknn):
#   GRAPH=/data/graph RUN=/data/runs/r1 launch/evaluate.sh
#   SPLIT=test NPROC_PER_NODE=4 GRAPH=... RUN=... launch/evaluate.sh
# Rendezvous knobs (NPROC_PER_NODE, NNODES, NODE_RANK, RDZV_ENDPOINT, LOG_DIR): launch/torchrun.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${GRAPH:?set GRAPH to the graph dir}" "${RUN:?set RUN to the run dir}"
SPLIT=${SPLIT:-val}
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
# Export is batched inference with bounded memory: one process is enough, and on a GPU node fast.
"$PY" -m trainer.embed --graph "$GRAPH" --run "$RUN"
exec launch/torchrun.sh trainer.evaluate --graph "$GRAPH" --run "$RUN" --split "$SPLIT" "$@"
