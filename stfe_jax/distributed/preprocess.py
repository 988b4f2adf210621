"""Command line: build a flow store from captures on a Dask cluster.

On this machine, with a LocalCluster of 4 worker processes:

  python -m stfe_jax.distributed.preprocess --captures='traces/*.pcap.gz' \\
      --store=stores/mawi --workers=4

On a running cluster (workers need stfe-jax installed and read access to the
captures and the store):

  python -m stfe_jax.distributed.preprocess --captures='s3://bucket/traces/*.pcap' \\
      --store=s3://bucket/stores/mawi --scheduler=tcp://scheduler:8786
"""

from absl import app, flags, logging

from stfe_jax import configs
from stfe_jax.distributed.cluster_build import preprocess_captures

FLAGS = flags.FLAGS

flags.DEFINE_multi_string(
    "captures", None, "Capture files, URLs or globs (pcap, pcapng, optionally gzip)."
)
flags.DEFINE_string("store", None, "Store root: a path or a URL (s3://, gs://).")
flags.DEFINE_integer(
    "workers", None, "Worker processes of the local cluster (default: CPU count)."
)
flags.DEFINE_string(
    "scheduler", None, "Dask scheduler address (tcp://host:8786); default: local."
)
flags.DEFINE_integer("shard_flows", 65536, "Most flows per shard file.")
flags.DEFINE_integer("retries", 1, "Times a failed capture is tried again.")
flags.DEFINE_bool(
    "retry_failed", False, "Also rebuild captures recorded as failed before."
)
flags.DEFINE_string("model", "cnn_lstm", "Config whose flows section cuts flows.")
flags.DEFINE_bool("tiny", False, "Use the tiny config's flows section.")
flags.DEFINE_multi_string(
    "set", [], "Config override KEY=VALUE, e.g. flows.bytes_per_packet=64."
)
flags.mark_flags_as_required(["captures", "store"])


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = configs.get_config(FLAGS.model, tiny=FLAGS.tiny)
    configs.apply_overrides(config, list(FLAGS.set))
    summary = preprocess_captures(
        FLAGS.captures,
        FLAGS.store,
        config.flows,
        scheduler=FLAGS.scheduler,
        workers=FLAGS.workers,
        shard_flows=FLAGS.shard_flows,
        retries=FLAGS.retries,
        retry_failed=FLAGS.retry_failed,
    )
    if summary.failed:
        logging.warning(
            "%d captures failed; their records in the manifest say why",
            len(summary.failed),
        )


if __name__ == "__main__":
    logging.set_verbosity(logging.INFO)
    app.run(main)
