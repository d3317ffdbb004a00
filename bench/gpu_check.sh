#!/usr/bin/env bash
# GPU check of the trainer on a CUDA machine, from the repo root:
#   bash bench/gpu_check.sh [PHASE ...]      phases: chain regime tests full epoch short (default: all)
#   PLAYLISTS=1000000 STEPS=20 DEADLINE=480 bash bench/gpu_check.sh chain   # the 1M chain in 8 minutes
#   PLAYLISTS=1000000 DEADLINE=480 bash bench/gpu_check.sh regime   # the defaults' 1M curve until DEADLINE
#   PLAYLISTS=1000000 bash bench/gpu_check.sh full    # full-graph training at full-MPD size
# Knobs: PY (python3), GRAPH (graph dir; default: a PLAYLISTS-playlist synthetic graph written
# through the contract, generated when missing), STEPS (150), OUT (/tmp/gpu_check), WORK,
# DEADLINE (seconds from the start: no run starts after it, and a running one is stopped there;
# default: none), DEVICE (cuda; cpu runs the same phases where there is no GPU, as the tests do),
# EVAL_PLAYLISTS (test playlists the chain evaluates, default 1000).
# Writes one JSON line per measurement to $OUT/gpu_check.jsonl and the logs to $OUT/logs.tgz;
# graphs and run dirs go to $WORK.
#
# Needs a CUDA build of torch, torch-geometric, pyarrow, fsspec, tqdm, matplotlib and pytest.
# torch-scatter / torch-sparse are used when they import; otherwise they are built from the
# sdists in $SDISTS (default .gpu, a folder git ignores; fill it where pip works with
# `pip download --no-deps --no-binary :all: --no-build-isolation -d .gpu torch-scatter==2.1.2
# torch-sparse==0.6.18`) or unpacked from a build this script saved before ($SDISTS/pyg_ext_build.tgz),
# CPU ops only: LinkNeighborLoader samples on the CPU, and GPU nodes are often offline or run a
# torch that PyG's wheel index has no wheels for. Extensions build in parallel (-j nproc).
set -uo pipefail
PY=${PY:-python3}
OUT=${OUT:-/tmp/gpu_check}
PLAYLISTS=${PLAYLISTS:-100000}
WORK=${WORK:-/tmp/gpu_check_work}  # before GRAPH, whose default lives under it
GRAPH=${GRAPH:-$WORK/graph$PLAYLISTS}
STEPS=${STEPS:-150}
DEADLINE=${DEADLINE:-0}
DEVICE=${DEVICE:-cuda}
EVAL_PLAYLISTS=${EVAL_PLAYLISTS:-1000}
SDISTS=${SDISTS:-.gpu}
PHASES=${*:-chain regime tests full epoch short}
LOGS=$WORK/logs
mkdir -p "$OUT" "$LOGS"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
JSONL=$OUT/gpu_check.jsonl
note() { echo "[$(date +%T) +${SECONDS}s] $*"; }
save_logs() { tar czf "$OUT/logs.tgz" -C "$WORK" logs; }
TIME=(); [ -x /usr/bin/time ] && TIME=(/usr/bin/time -f "wall %e s, peak host RSS %M KB")

# Every 30 s: the newest log's last line (tqdm's step count and rate) and a fresh logs.tgz, so a
# run cut off by a time limit still tells how far it got.
# The sleep runs in the background and is killed with the loop: a sleep left behind holds the
# script's stdout open, and whoever reads it (a test's pipe) waits up to 30 s for nothing.
(trap 'kill $nap 2>/dev/null; exit 0' TERM
while :; do
    sleep 30 & nap=$!
    wait $nap
    f=$(ls -t "$LOGS"/*.log 2>/dev/null | head -n 1)
    [ -n "$f" ] && echo "[progress] $(basename "$f"): $(tr '\r' '\n' < "$f" | grep -v '^[[:space:]]*$' | tail -n 1 | cut -c1-160)"
    save_logs
done) &
PROGRESS=$!
trap 'kill $PROGRESS 2>/dev/null' EXIT

note "machine"
[ "$DEVICE" = cuda ] && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
echo "cpus $(nproc), $(free -g | awk '/Mem/ {print $2}') GiB"
"$PY" -c "import sys, torch, torch_geometric as g; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'pyg', g.__version__, 'device', torch.cuda.get_device_name(0) if '$DEVICE' == 'cuda' else 'cpu')" || exit 1

if ! "$PY" -c "import torch_sparse, torch_scatter" 2>/dev/null; then
    if [ -f "$SDISTS/pyg_ext_build.tgz" ]; then
        tar xzf "$SDISTS/pyg_ext_build.tgz" -C "$WORK"
    else
        note "building torch-scatter and torch-sparse (CPU ops) from $SDISTS"
        builds=()
        for pkg in torch_scatter-2.1.2 torch_sparse-0.6.18; do
            tar xzf "$SDISTS/$pkg.tar.gz" -C "$WORK"
            # Parallel extensions share one build dir, and ninja writes one build.ninja there.
            sed -i 's/with_options(no_python_abi_suffix=True)/with_options(no_python_abi_suffix=True, use_ninja=False)/' \
                "$WORK/$pkg/setup.py"
            (cd "$WORK/$pkg" && FORCE_ONLY_CPU=1 "$PY" setup.py -q build_ext -j "$(nproc)" --inplace \
                > "$LOGS/build_$pkg.log" 2>&1) &
            builds+=($!)
        done
        wait "${builds[@]}"
        save_logs
        tar czf "$OUT/pyg_ext_build.tgz" -C "$WORK" torch_scatter-2.1.2/torch_scatter torch_sparse-0.6.18/torch_sparse
        note "built"
    fi
    export PYTHONPATH=$PYTHONPATH:$WORK/torch_scatter-2.1.2:$WORK/torch_sparse-0.6.18
    "$PY" -c "import torch_sparse, torch_scatter" || { tail -n 30 "$LOGS"/build_*.log; exit 1; }
fi

if [ ! -f "$GRAPH/manifest.json" ]; then
    note "writing a $PLAYLISTS-playlist synthetic graph to $GRAPH"
    "$PY" -m etl.synth --playlists "$PLAYLISTS" --graph-dir --out "$GRAPH" --quiet || exit 1
fi

# limited NAME CMD...: CMD with its output in $LOGS/NAME.log, not started past DEADLINE and stopped
# at it (exit 124: said as such).
limited() {
    local name=$1; shift
    local left=0
    if [ "$DEADLINE" -gt 0 ]; then
        left=$((DEADLINE - SECONDS))
        if [ "$left" -le 0 ]; then note "skipped $name: past DEADLINE"; return 124; fi
    fi
    note "$name: $*"
    timeout "$left" "${TIME[@]}" "$@" > "$LOGS/$name.log" 2>&1
    local rc=$?
    save_logs
    if [ "$rc" -eq 124 ]; then note "stopped $name at DEADLINE"; elif [ "$rc" -ne 0 ]; then tail -n 30 "$LOGS/$name.log"; fi
    return $rc
}

# run NAME ARGS...: one training run in $WORK/NAME; its last metrics line, named, goes to the JSONL.
run() {
    local name=$1; shift
    rm -rf "${WORK:?}/$name"
    limited "$name" "$PY" -m trainer.train --graph "$GRAPH" --out "$WORK/$name" "$@" || return 1
    tail -n 1 "$LOGS/$name.log"
    "$PY" -c "import json, sys; r = json.loads(open('$WORK/$name/metrics.jsonl').read().splitlines()[-1]); r['run'] = '$name'; r['args'] = sys.argv[1:]; print(json.dumps(r))" "$@" | tee -a "$JSONL"
}

for phase in $PHASES; do
    case $phase in
    chain)
        # The chain's device stages: STEPS full-propagation steps (a step cap: not a converged
        # model), the embeddings, then gnn and popularity ranked for EVAL_PLAYLISTS test playlists.
        run chain_train --epochs=1 --max_steps_per_epoch="$STEPS" --device="$DEVICE" --propagation=full \
            --val_max_edges=5000 || continue
        limited chain_embed "$PY" -m trainer.embed --graph "$GRAPH" --run "$WORK/chain_train" --device "$DEVICE" || continue
        limited chain_evaluate "$PY" -m trainer.evaluate --graph "$GRAPH" --run "$WORK/chain_train" --split test \
            --methods gnn,popularity --max-playlists "$EVAL_PLAYLISTS" --device "$DEVICE" || continue
        "$PY" -c "import json; r = json.load(open('$WORK/chain_train/eval_test.json')); s = r['seconds']
print(json.dumps({'run': 'chain_evaluate', 'device': '$DEVICE', 'playlists': r['num_playlists'],
    'methods': list(r['methods']), 'seconds': s, 'peak_gpu_mb': r.get('peak_gpu_mb'),
    'playlists_per_s': round(r['num_playlists'] * len(r['methods']) / max(s['ranking'], 1e-9), 1)}))" | tee -a "$JSONL"
        ;;
    regime)
        # What `trainer.train` does with no flags (regime=auto: at 1M large-graph, a ranking
        # validation every 20 steps) until patience stops it or DEADLINE does (SIGTERM: the step
        # finishes and is checkpointed, exit 143). Every validation goes to the JSONL: the curve in
        # propagations and seconds on this card, from which a converged run's time is projected.
        rm -rf "${WORK:?}/regime"
        limited regime "$PY" -m trainer.train --graph "$GRAPH" --out "$WORK/regime" --device="$DEVICE"
        rc=$?
        [ -f "$WORK/regime/metrics.jsonl" ] && "$PY" -c "import json
regime = json.load(open('$WORK/regime/config.json'))['regime']
for line in open('$WORK/regime/metrics.jsonl'):
    r = json.loads(line)
    if r.get('val_r_precision') is not None:
        print(json.dumps({'run': 'regime', 'device': '$DEVICE', 'regime': regime, 'stopped_by': 'deadline' if $rc else 'itself',
              **{k: r.get(k) for k in ('epoch', 'global_step', 'elapsed_s', 'val_r_precision', 'val_ndcg')}}))" \
            | tee -a "$JSONL"
        ;;
    tests)
        note "trainer tests on this machine (the CUDA ones included)"
        "$PY" -m pytest -q -p no:cacheprovider tests/test_trainer_cuda.py tests/test_neighbor_sampler.py > "$LOGS/pytest.log" 2>&1
        save_logs; tail -n 15 "$LOGS/pytest.log"
        ;;
    full)
        # Full-graph propagation (the default for conv=lightgcn): one whole epoch, no sampler.
        run cuda_full --epochs=1 --device=cuda --propagation=full --batch_size=8192 --val_max_edges=5000
        run cuda_full_bf16 --epochs=1 --device=cuda --propagation=full --batch_size=8192 --val_max_edges=5000 --amp=true
        ;;
    short)
        SHORT=(--epochs=1 --max_steps_per_epoch="$STEPS" --val_max_edges=5000 --propagation=sampled)
        # torch-sparse on 8 CPU workers vs the device sampler on the GPU (no workers: it samples
        # in the training process); cuda_defaults is the latter too (sampler=auto).
        run sampled_device "${SHORT[@]}" --device=cuda --sampler=device --num_workers=0
        run cuda_w8 "${SHORT[@]}" --device=cuda --sampler=torch_sparse --num_workers=8
        run sampled_device_b1024 "${SHORT[@]}" --device=cuda --sampler=device --num_workers=0 --batch_size=1024
        run cuda_w8_b1024 "${SHORT[@]}" --device=cuda --sampler=torch_sparse --num_workers=8 --batch_size=1024
        run cuda_w8_bf16 "${SHORT[@]}" --device=cuda --sampler=torch_sparse --num_workers=8 --amp=true
        run cuda_defaults "${SHORT[@]}" --device=cuda
        run cpu_sampled --epochs=1 --max_steps_per_epoch=30 --val_max_edges=5000 --device=cpu --propagation=sampled
        ;;
    epoch)
        run cuda_epoch --epochs=1 --device=cuda --sampler=torch_sparse --num_workers=8 --propagation=sampled
        note "embedding export on the GPU"
        "${TIME[@]}" "$PY" -m trainer.embed --graph "$GRAPH" \
            --run "$WORK/cuda_epoch" --device cuda > "$LOGS/embed.log" 2>&1
        save_logs; tail -n 3 "$LOGS/embed.log"
        ;;
    *) echo "unknown phase $phase (chain, regime, tests, full, short, epoch)"; exit 2 ;;
    esac
done
note "done"
