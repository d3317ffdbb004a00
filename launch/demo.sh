#!/usr/bin/env bash
# The main job on the embedded default (what `make demo` runs):
#   MPD slices (synthetic, or $MPD_DIR) -> Spark ETL (local) -> GNN training (CPU) -> embeddings
#   -> the second-stage ranker (from the val playlists) -> full-catalogue evaluation (rerank and
#   fusion vs gnn, popularity, item-kNN, ALS) -> a recommendation.
#
# Usage:
#   launch/demo.sh                                     # 3,000 synthetic playlists
#   DEMO_PLAYLISTS=10000 launch/demo.sh
#   MPD_DIR=/path/to/spotify_million_playlist_dataset/data launch/demo.sh
#   MPD_DIR=../shared/data/mpd_real launch/demo.sh     # the 2,000 real playlists beside the repo
# Knobs: MPD_DIR (real MPD slices; default: generate a synthetic sample), DEMO_DIR (demo),
#        DEMO_PLAYLISTS (3000), EPOCHS (default: the trainer's, which stops when the validation
#        R-precision stops improving), TRAIN_ARGS (extra trainer --key=value options),
#        RERANK (1: build the second-stage ranker; 0 by default on the full MPD), PY (.venv/bin/python).
# The synthetic input and the graph dir are reused when present (a real input's by its path, file
# names and sizes); training reruns each time, replacing the previous demo run (said on the console).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DEMO_DIR=${DEMO_DIR:-demo}
DEMO_PLAYLISTS=${DEMO_PLAYLISTS:-3000}
EPOCHS=${EPOCHS:-}

if [ -n "${MPD_DIR:-}" ]; then
    [ -d "$MPD_DIR" ] || { echo "error: MPD_DIR=$MPD_DIR is not a directory; it should be the data/ folder of the unzipped MPD (1,000 mpd.slice.*.json files)" >&2; exit 2; }
    ls "$MPD_DIR"/mpd.slice.*.json >/dev/null 2>&1 || { echo "error: MPD_DIR=$MPD_DIR holds no mpd.slice.*.json files" >&2; exit 2; }
    input=$MPD_DIR
    # Reused work is keyed on the input itself (its resolved path, file names and sizes), not on
    # its folder's name: the MPD's own folder is called data, like many others.
    key=$( { cd "$MPD_DIR" && pwd && ls -l mpd.slice.*.json; } | sha1sum | cut -c1-12)
    work=$DEMO_DIR/real-$(basename "$(cd "$MPD_DIR" && pwd)")-$key
    # A CPU demo on the full MPD (1,000 slices): bound the run rather than train for days.
    if [ "$(ls "$MPD_DIR"/mpd.slice.*.json | wc -l)" -gt 20 ]; then
        TRAIN_ARGS=${TRAIN_ARGS:---max_steps_per_epoch=200 --epochs=2}
        # Its val playlists' three retrievers alone take ~36 min per 10,000 on 2 cores: opt-in there.
        RERANK=${RERANK:-0}
    fi
else
    work=$DEMO_DIR/synthetic-$DEMO_PLAYLISTS
    input=$work/mpd
    if [ ! -d "$input" ]; then
        echo "== 1/7 synthetic MPD: $DEMO_PLAYLISTS playlists -> $input"
        "$PY" -m etl.synth --playlists "$DEMO_PLAYLISTS" --out "$input"
    else
        echo "== 1/7 synthetic MPD: reusing $input"
    fi
fi
graph=$work/graph
run=$work/run

if [ ! -f "$graph/manifest.json" ]; then
    echo "== 2/7 ETL (Spark, local mode): $input -> $graph"
    "$PY" -m etl.job --input "$input" --output "$graph"
else
    echo "== 2/7 ETL: reusing $graph (delete it to rebuild)"
fi

echo "== 3/7 training (${EPOCHS:-until val R-precision stops improving} epochs, CPU): $run"
if [ -e "$run" ]; then
    echo "   removing the previous demo run $run (the demo retrains each time)"
    rm -rf "$run"
fi
# shellcheck disable=SC2086  # TRAIN_ARGS is a list of options
"$PY" -m trainer.train --graph "$graph" --out "$run" ${EPOCHS:+--epochs="$EPOCHS"} ${TRAIN_ARGS:-}

echo "== 4/7 embeddings: $run/embeddings"
"$PY" -m trainer.embed --graph "$graph" --run "$run"

if [ "${RERANK:-1}" = 1 ]; then
    echo "== 5/7 second-stage ranker (LightGBM over gnn, ALS and item-kNN candidates, trained on val): $run/reranker"
    "$PY" -m trainer.rerank --graph "$graph" --run "$run"
else
    echo "== 5/7 second-stage ranker: skipped (RERANK=0)"
fi

echo "== 6/7 evaluation on held-out test playlists (full catalogue, RecSys 2018 metrics): rerank, fusion, gnn, popularity, item-kNN, ALS"
"$PY" -m trainer.evaluate --graph "$graph" --run "$run" --split test

pid=$("$PY" - "$graph" <<'EOF'
import sys
import pyarrow.compute as pc
import pyarrow.dataset as ds
t = ds.dataset(f"{sys.argv[1]}/nodes/playlist", format="parquet").to_table(
    columns=["pid", "split", "seed_category"])
held = t.filter(pc.and_(pc.equal(t["split"], "val"), pc.equal(t["seed_category"], "first_10")))
held = held if held.num_rows else t.filter(pc.equal(t["split"], "val"))
print(min(held["pid"].to_pylist()))
EOF
)
echo "== 7/7 recommendation for held-out playlist pid $pid (its seed tracks are excluded)"
"$PY" -m trainer.recommend --graph "$graph" --run "$run" --pid "$pid" -k 10

echo
echo "outputs:"
echo "  graph dir (Parquet + manifest.json): $graph"
echo "  run dir (config, checkpoints, metrics.jsonl, curves.png): $run"
echo "  embeddings: $run/embeddings/{track,playlist}.parquet"
if [ "${RERANK:-1}" = 1 ]; then echo "  second-stage ranker: $run/reranker/ (identity.json: recall, folds, importances)"; fi
echo "  evaluation report: $run/eval_test.json"
