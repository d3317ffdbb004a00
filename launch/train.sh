#!/usr/bin/env bash
# Train the GNN (trainer.train) with torchrun, on one node or many.
#
# Usage (extra arguments go to trainer.train, e.g. --epochs=5 --batch_size=2048):
#   GRAPH=/data/graph RUN=/data/runs/r1 launch/train.sh
#   # one node, 8 GPUs
#   NPROC_PER_NODE=8 GRAPH=... RUN=... launch/train.sh --device=cuda --amp=true
#   # two nodes: run on each node with its NODE_RANK; RDZV_ENDPOINT is node 0's host:port
#   NNODES=2 NODE_RANK=0 RDZV_ENDPOINT=node0:29500 GRAPH=s3://bucket/graph RUN=s3://bucket/runs/r1 launch/train.sh
#   NNODES=2 NODE_RANK=1 RDZV_ENDPOINT=node0:29500 GRAPH=s3://bucket/graph RUN=s3://bucket/runs/r1 launch/train.sh
#   # SLURM: see launch/slurm/train.sbatch
# Rendezvous knobs (NPROC_PER_NODE, NNODES, NODE_RANK, RDZV_ENDPOINT, LOG_DIR): launch/torchrun.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${GRAPH:?set GRAPH to the graph dir written by the ETL}"
: "${RUN:?set RUN to the run dir to write}"
exec launch/torchrun.sh trainer.train --graph "$GRAPH" --out "$RUN" "$@"
