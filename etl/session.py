"""The Spark session the job runs in, the runtime it needs (Java, Spark) checked first, and its
running out of memory told from its errors."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys

from py4j.protocol import Py4JNetworkError
from pyspark import SparkConf
from pyspark.sql import SparkSession

MIN_JAVA = 17  # Spark 4's minimum
SPARK_MAJOR = 4


class RuntimeMissing(RuntimeError):
    """No Java, or no Spark, where Spark will look for them."""


def require_spark_runtime() -> None:
    """Spark's driver is a JVM started by ``$SPARK_HOME/bin/spark-submit`` (the pyspark package's
    own Spark when SPARK_HOME is unset), which runs ``$JAVA_HOME/bin/java`` when JAVA_HOME is set
    and ``java`` from PATH otherwise. Checked here the same way: otherwise pyspark only says its
    gateway exited, or that a file was not found."""
    spark_home = os.environ.get("SPARK_HOME")
    if spark_home and not os.access(os.path.join(spark_home, "bin", "spark-submit"), os.X_OK):
        raise RuntimeMissing(
            f"SPARK_HOME={spark_home} has no bin/spark-submit: unset SPARK_HOME to use the pyspark "
            "package's own Spark, or point it at a Spark installation"
        )
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        java = os.path.join(java_home, "bin", "java")
        if not os.access(java, os.X_OK):
            raise RuntimeMissing(
                f"JAVA_HOME={java_home} has no bin/java, and Spark runs the java of JAVA_HOME before any on "
                f"PATH: point JAVA_HOME at a Java {MIN_JAVA} installation, or unset it"
            )
        where = f"JAVA_HOME={java_home}"
    else:
        java = shutil.which("java")
        if not java:
            raise RuntimeMissing(
                f"Java not found (no java on PATH, JAVA_HOME unset): Spark needs Java {MIN_JAVA}; install it "
                "(Debian/Ubuntu: apt-get install openjdk-17-jre-headless) or set JAVA_HOME"
            )
        where = f"{java} (first on PATH, JAVA_HOME unset)"
    version = java_version(java)
    if version is None or version < MIN_JAVA:
        said = "an unreadable version" if version is None else f"Java {version}"
        raise RuntimeMissing(
            f"{where} is {said}; Spark {SPARK_MAJOR} needs Java {MIN_JAVA} or newer: set JAVA_HOME to a Java "
            f"{MIN_JAVA}+ installation (Debian/Ubuntu: apt-get install openjdk-17-jre-headless)"
        )


def java_version(java: str) -> int | None:
    """The major version ``java -version`` reports (``1.8.0_392`` -> 8, ``17.0.15`` -> 17), or None."""
    try:
        said = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60).stderr
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', said)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def spark_session(args: argparse.Namespace) -> SparkSession:
    """The active session, or a new one: spark-submit's master wins unless --master is given."""
    # Under spark-submit the JVM, with its --master and memory settings, started this Python
    # process and left its gateway port in the environment.
    under_spark_submit = "PYSPARK_GATEWAY_PORT" in os.environ
    if not under_spark_submit and SparkSession.getActiveSession() is None:
        require_spark_runtime()
    builder = SparkSession.builder.appName("mpd-graph-etl")
    if args.master:
        builder = builder.master(args.master)
    elif not under_spark_submit:
        builder = builder.master("local[*]")
    if not under_spark_submit:
        builder = builder.config("spark.driver.memory", args.driver_memory)
    # The hll features broadcast one sketch per playlist, track, album and artist (about 0.5 GB
    # at full MPD scale), built by an aggregation that counts against the broadcast timeout.
    # Defaults only: a value given to spark-submit (--conf) wins.
    given = SparkConf() if under_spark_submit else None
    # Spark's progress bar redraws itself with carriage returns: on a terminal it is progress, in a
    # log file megabytes of one line (the stages' own start and end lines say the same there).
    progress = "true" if sys.stderr.isatty() else "false"
    for key, value in (
        ("spark.driver.maxResultSize", "2g"),
        ("spark.sql.broadcastTimeout", "3600"),
        ("spark.ui.showConsoleProgress", progress),
    ):
        if given is None or not given.contains(key):
            builder = builder.config(key, value)
    return (
        builder.config("spark.sql.adaptive.enabled", "true")
        .config("spark.sql.adaptive.coalescePartitions.enabled", "true")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )


def out_of_memory(e: BaseException) -> str | None:
    """What Spark said when ``e`` (a Py4J error carrying a Java trace) is the JVM running out of
    heap, else None."""
    text = str(e)
    for said in ("Not enough memory to build and broadcast the table", "java.lang.OutOfMemoryError: Java heap space"):
        if said in text:
            return said
    if isinstance(e, Py4JNetworkError):  # a task's OutOfMemoryError ends the local-mode JVM itself
        return "the JVM stopped answering; its own last words are above, most often java.lang.OutOfMemoryError"
    return None
