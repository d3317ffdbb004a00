#!/usr/bin/env bash
# spark-submit of the ETL: MPD JSON slices -> Parquet graph dir (etl/job.py).
#
# Usage (any extra arguments go to etl.job, e.g. --hop2 hll --overwrite):
#   INPUT=/data/mpd/data OUTPUT=/data/graph launch/etl.sh
#   # Spark standalone cluster
#   SPARK_MASTER=spark://master:7077 EXECUTOR_MEMORY=16g EXECUTOR_CORES=4 NUM_EXECUTORS=8 \
#     INPUT=hdfs:///mpd/data OUTPUT=hdfs:///graphs/mpd launch/etl.sh --hop2 hll
#   # YARN (driver on the cluster)
#   SPARK_MASTER=yarn DEPLOY_MODE=cluster INPUT=hdfs:///mpd/data OUTPUT=hdfs:///graphs/mpd launch/etl.sh
#   # Kubernetes (the image must have Python 3.10+, pyspark and Java 17)
#   SPARK_MASTER=k8s://https://k8s-api:6443 DEPLOY_MODE=cluster \
#     SPARK_CONF="--conf spark.kubernetes.container.image=registry/spark-py:4.0 --conf spark.executor.instances=8" \
#     INPUT=s3a://bucket/mpd/data OUTPUT=s3a://bucket/graphs/mpd launch/etl.sh
#   # Object storage from a laptop or a cluster without the S3 connector
#   SPARK_CONF="--packages org.apache.hadoop:hadoop-aws:3.4.1" INPUT=s3a://bucket/mpd/data OUTPUT=... launch/etl.sh
set -euo pipefail
cd "$(dirname "$0")/.."

: "${INPUT:?set INPUT to the MPD data dir or glob (local path or hdfs://, s3a://, gs:// URL)}"
: "${OUTPUT:?set OUTPUT to the graph dir to write}"
SPARK_MASTER=${SPARK_MASTER:-local[*]}
DEPLOY_MODE=${DEPLOY_MODE:-client}
DRIVER_MEMORY=${DRIVER_MEMORY:-6g}  # builds --hop2 hll's broadcast: 4g failed at 1M playlists
EXECUTOR_MEMORY=${EXECUTOR_MEMORY:-4g}
EXECUTOR_CORES=${EXECUTOR_CORES:-2}
NUM_EXECUTORS=${NUM_EXECUTORS:-2}
SPARK_CONF=${SPARK_CONF:-}
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || command -v python3 )}
# Executors start Python in their own work dir, not here: a relative path fails there
# (Cannot run program ".venv/bin/python": error=2). Absolute, but not resolved: the venv's
# python is a symlink whose target would lose the venv.
case "$PY" in /*) ;; */*) PY="$PWD/$PY" ;; esac
SPARK_SUBMIT=${SPARK_SUBMIT:-$(command -v spark-submit || echo "$(dirname "$PY")/spark-submit")}
[ -x "$SPARK_SUBMIT" ] || { echo "error: spark-submit not found (set SPARK_SUBMIT, or run make install)" >&2; exit 2; }

# Executors need the etl package: ship it as a zip with --py-files. spark-submit runs as a child
# (not exec'd) so that this trap still runs and removes the zip's temporary dir.
pkg=$(mktemp -d)/etl.zip
trap 'rm -rf "$(dirname "$pkg")"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
"$PY" - "$pkg" <<'PYZIP'
import pathlib, sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w") as z:
    for f in sorted(pathlib.Path("etl").rglob("*.py")):
        z.write(f)
PYZIP

# A PYSPARK_PYTHON of the user's is left as given: ./env/bin/python is how one names the python
# of an --archives env on YARN.
export PYSPARK_PYTHON=${PYSPARK_PYTHON:-$PY}
# shellcheck disable=SC2086  # SPARK_CONF is a list of options
"$SPARK_SUBMIT" \
    --master "$SPARK_MASTER" --deploy-mode "$DEPLOY_MODE" \
    --driver-memory "$DRIVER_MEMORY" --executor-memory "$EXECUTOR_MEMORY" \
    --executor-cores "$EXECUTOR_CORES" --num-executors "$NUM_EXECUTORS" \
    --py-files "$pkg" $SPARK_CONF \
    etl/job.py --input "$INPUT" --output "$OUTPUT" "$@"
