"""Run the ETL job inside the test session's SparkSession."""


def run_etl(spark, *argv) -> dict:
    """``python -m etl.job ARGV`` in this session; returns the manifest it wrote."""
    from etl import options, pipeline

    return pipeline.build_graph_dir(options.parse_args([str(a) for a in argv]), spark)
