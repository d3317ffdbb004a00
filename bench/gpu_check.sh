#!/usr/bin/env bash
# GPU checks for the trainer, for a machine with CUDA (none was lent while this was written, so
# it has not been run yet). Usage, from the repo root:
#   bash bench/gpu_check.sh            # knobs: PY, PLAYLISTS (default 20000), STEPS (default 60), OUT
# Needs a CUDA build of torch plus torch-geometric, torch-scatter/torch-sparse for that torch+CUDA
# (PyG's wheel index: https://data.pyg.org/whl/). Writes JSON lines to $OUT/gpu_check.jsonl.
# What it checks: device=cuda trains (nccl, bf16 autocast), the metrics are sane, DDP over all
# visible GPUs keeps ranks in lockstep, embeddings export on GPU equals CPU export.
set -euo pipefail
PY=${PY:-.venv/bin/python}
PLAYLISTS=${PLAYLISTS:-20000}
STEPS=${STEPS:-60}
OUT=${OUT:-${TMPDIR:-/tmp}/gpu_check}
mkdir -p "$OUT"
export PYTHONPATH=$PWD OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
"$PY" - <<'PY'
import torch, torch_geometric, torch_sparse
assert torch.cuda.is_available(), f"torch {torch.__version__} sees no CUDA device"
print("torch", torch.__version__, "cuda", torch.version.cuda, "pyg", torch_geometric.__version__,
      "gpus", torch.cuda.device_count(), torch.cuda.get_device_name(0))
PY
GRAPH=$OUT/graph$PLAYLISTS
[ -f "$GRAPH/manifest.json" ] || "$PY" -c "
import sys; sys.path.insert(0, 'tests')
from graphdir_fixture import synthetic_graph_dir
synthetic_graph_dir('$GRAPH', $PLAYLISTS)"
NGPU=$(nvidia-smi -L | wc -l)
COMMON=(--graph "$GRAPH" --epochs=1 --max_steps_per_epoch="$STEPS" --device=cuda --batch_size=2048 --num_workers=4)
rm -rf "$OUT/run_fp32" "$OUT/run_amp" "$OUT/run_ddp"
echo "== 1 GPU fp32";  "$PY" -m trainer.train "${COMMON[@]}" --out "$OUT/run_fp32" --amp=false
echo "== 1 GPU bf16";  "$PY" -m "trainer.train" "${COMMON[@]}" --out "$OUT/run_amp" --amp=true
echo "== $NGPU GPUs DDP (nccl)"
"$PY" -m torch.distributed.run --standalone --nproc_per_node "$NGPU" -m trainer.train "${COMMON[@]}" --out "$OUT/run_ddp" --amp=true
echo "== embeddings on GPU vs CPU"
"$PY" - "$GRAPH" "$OUT/run_amp" <<'PY' | tee -a "$OUT/gpu_check.jsonl"
import json, sys, time, torch
from trainer.embed import encode_all, load_trained
from trainer.graph import load_graph
g = load_graph(sys.argv[1])
out = {}
for dev in ("cuda", "cpu"):
    model, _ = load_trained(sys.argv[2], g, dev)
    t0 = time.perf_counter(); out[dev] = encode_all(model, g, 8192, dev); torch.cuda.synchronize()
    print(json.dumps({"what": "embed", "device": dev, "seconds": round(time.perf_counter() - t0, 2)}))
diff = max((out["cuda"][t] - out["cpu"][t]).abs().max().item() for t in out["cpu"])
print(json.dumps({"what": "embed_cuda_vs_cpu_max_abs_diff", "value": diff}))
assert diff < 1e-3, diff
PY
for r in run_fp32 run_amp run_ddp; do
  "$PY" -c "import json; r=json.loads(open('$OUT/$r/metrics.jsonl').read().splitlines()[-1]); r['run']='$r'; print(json.dumps(r))" | tee -a "$OUT/gpu_check.jsonl"
done
echo "== trainer tests on this machine"
"$PY" -m pytest -q tests/test_trainer_model.py tests/test_trainer_train.py tests/test_trainer_ddp.py
