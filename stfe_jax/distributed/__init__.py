"""Scaling out: building a store on a Dask cluster, training across JAX processes.

preprocess_captures(captures, "s3://bucket/store", config.flows, workers=8)
"""

from stfe_jax.distributed.capture_job import CaptureJob, build_capture_shards
from stfe_jax.distributed.cluster_build import (
    PreprocessSummary,
    cluster_client,
    preprocess_captures,
)

__all__ = [
    "CaptureJob",
    "PreprocessSummary",
    "build_capture_shards",
    "cluster_client",
    "preprocess_captures",
]
