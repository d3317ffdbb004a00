#!/usr/bin/env bash
# The main job on the embedded default (called by `make demo`):
#   synthetic MPD (or $MPD_DIR) -> Spark ETL (local) -> CPU trainer -> evaluation -> recommend.
# Knobs: MPD_DIR (real MPD data dir; default: generate DEMO_PLAYLISTS synthetic playlists),
#        DEMO_DIR (default demo), DEMO_PLAYLISTS (default 3000), PY (python, default .venv/bin/python)
set -euo pipefail
PY=${PY:-.venv/bin/python}
DEMO_DIR=${DEMO_DIR:-demo}
DEMO_PLAYLISTS=${DEMO_PLAYLISTS:-3000}
if [ -n "${MPD_DIR:-}" ]; then
    [ -d "$MPD_DIR" ] || { echo "error: MPD_DIR=$MPD_DIR is not a directory" >&2; exit 2; }
    input=$MPD_DIR
else
    input=$DEMO_DIR/mpd
    if [ ! -d "$input" ]; then
        echo "== generating a synthetic MPD sample: $DEMO_PLAYLISTS playlists -> $input"
        "$PY" -m etl.synth --playlists "$DEMO_PLAYLISTS" --out "$input"
    fi
fi
echo "== input: $input"
echo "(ETL and trainer stages are added as they land)"
