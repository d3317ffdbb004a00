"""The ETL's command: MPD JSON slices -> Parquet graph dir (``etl.pipeline.build_graph_dir``).

python -m etl.job --input DATA_DIR_OR_GLOB --output GRAPH_DIR [--hop2 exact|hll|off|auto]
spark-submit --py-files etl.zip etl/job.py --input hdfs:///mpd/data --output hdfs:///graph
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time

if __package__ in (None, ""):
    # Run as a script (spark-submit etl/job.py): Python put etl/ itself on sys.path, where our
    # module names would shadow others; import the package instead, shipped with --py-files
    # or, failing that, from the checkout this file lives in.
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    try:
        import etl  # noqa: F401
    except ImportError:
        sys.path.insert(0, os.path.dirname(_here))

from pyspark import SparkContext  # noqa: E402  (after the script-mode path fix above)

from etl import broadcast, session, storage  # noqa: E402
from etl.options import parse_args  # noqa: E402
from etl.pipeline import BadInputError, build_graph_dir  # noqa: E402
from etl.session import RuntimeMissing, spark_session  # noqa: E402
from etl.stages import STOP, Terminated  # noqa: E402

log = logging.getLogger("etl")


def _terminate(signum, frame):
    """SIGTERM: never raised inside a call to the JVM (that would garble the Py4J connection the
    clean-up needs); Spark's jobs are cancelled from a thread of its own, so the call the main
    thread waits in fails, and the pipeline stops at its next stage boundary."""
    if STOP.is_set():
        return
    STOP.set()

    def cancel_until_exit():
        while True:
            context = SparkContext._active_spark_context
            if context is not None:
                context.cancelAllJobs()
            time.sleep(0.5)

    threading.Thread(target=cancel_until_exit, daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        build_graph_dir(args, spark_session(args))
    except (KeyboardInterrupt, Terminated, Exception) as e:
        if isinstance(e, KeyboardInterrupt) or STOP.is_set():  # a cancelled job fails with a Py4J error
            what, code = (
                ("interrupted (Ctrl-C)", 130) if isinstance(e, KeyboardInterrupt) else ("terminated (SIGTERM)", 143)
            )
            log.error("%s: stopped; nothing was published and the staging dir of %s is removed", what, args.output)
            return code
        if isinstance(
            e,
            (
                BadInputError,
                storage.OutputExistsError,
                storage.InputError,
                storage.OutputError,
                storage.Locked,
                RuntimeMissing,
                broadcast.DriverMemoryError,
            ),
        ):
            log.error("%s", e)
            return 2
        # Otherwise buried in a Py4J trace of hundreds of lines; the temporary output is gone.
        if storage.no_space_left(e):
            log.error(
                "no space left on device while writing %s or Spark's scratch files (spark.local.dir, "
                "SPARK_LOCAL_DIRS): nothing was published; free space there, or choose other places",
                args.output,
            )
        elif said := session.out_of_memory(e):
            log.error(
                "the Spark driver ran out of memory (%s): nothing was published; raise --driver-memory "
                "(now %s; spark.driver.memory under spark-submit)",
                said,
                args.driver_memory,
            )
        else:
            raise
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
