"""Several JAX processes as one data-parallel trainer: start-up, mesh, data parts.

Every process runs the same program. ``initialize`` joins the processes
(``jax.distributed``); ``global_sharding`` lays one ``("data",)`` mesh over the
devices of all of them. The training flows are cut into ``num_parts`` contiguous
parts (a multiple of the process count): process p reads only its own parts from
the store, draws one local batch per part, and ``global_batch`` joins the local
batches of all processes into one global array with
``jax.make_array_from_process_local_data``. The global batch depends on the parts,
not on the processes, so one process holding every part trains on exactly the
batches of many processes holding one part each.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from stfe_jax.train.steps import DATA_AXIS, Sharding


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Joins this process to the others of a multi-process run.

    With no arguments, JAX finds the processes of a TPU pod slice, a SLURM job or
    a Kubernetes job set by itself; elsewhere the run stays one process (logged).
    With arguments, they are used as given: the coordinator's ``host:port``
    (process 0 listens there; set ``JAX_COORDINATOR_BIND_ADDRESS`` to bind one
    interface only), the number of processes and this process's id.
    """
    explicit = (coordinator_address, num_processes, process_id)
    if any(value is not None for value in explicit):
        jax.distributed.initialize(
            coordinator_address=coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
        )
    else:
        try:
            jax.distributed.initialize()
        except ValueError as err:
            logging.warning(
                "No multi-process environment found (%s); training in one process",
                err,
            )
    logging.info(
        "JAX process %d of %d: %d local devices of %d (%s)",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
        jax.devices()[0].platform,
    )


def global_sharding() -> Sharding:
    """A one-axis data-parallel mesh over every device of every process."""
    # Devices in process order, so process p's rows are rows p*b .. (p+1)*b - 1
    # of a global batch; the axis is of the automatic kind, as in the local mesh.
    mesh = Mesh(np.asarray(jax.devices()), (DATA_AXIS,))
    return Sharding(
        mesh=mesh,
        batch=NamedSharding(mesh, PartitionSpec(DATA_AXIS)),
        replicated=NamedSharding(mesh, PartitionSpec()),
    )


def check_num_parts(num_parts: int | None) -> int:
    """The data parts of a run (default: one per process); a multiple of the
    process count, so that every process holds as many parts."""
    count = jax.process_count()
    num_parts = num_parts or count
    if num_parts < 1 or num_parts % count:
        raise ValueError(
            f"{num_parts} data parts do not divide among {count} processes"
        )
    return num_parts


def local_parts(num_parts: int) -> range:
    """The data parts this process holds (a contiguous run of part numbers)."""
    per_process = num_parts // jax.process_count()
    first = jax.process_index() * per_process
    return range(first, first + per_process)


def split_parts(indices: np.ndarray, num_parts: int) -> list[np.ndarray]:
    """``indices`` cut into ``num_parts`` contiguous parts of near-equal size
    (sizes differ by at most one flow)."""
    return np.array_split(np.asarray(indices, np.int64), num_parts)


def part_seed(seed: int, part: int) -> int:
    """The batch-order seed of one data part, derived from the run's seed."""
    return int(np.random.SeedSequence([seed, part]).generate_state(1)[0])


def global_batch(local_batch: Mapping[str, np.ndarray], sharding: Sharding) -> dict:
    """This process's rows of a global batch -> global arrays split over the mesh.

    Every process passes the same number of rows; the global batch holds
    ``process_count`` times as many.
    """
    out = {}
    for name, value in local_batch.items():
        value = np.asarray(value)
        shape = (value.shape[0] * jax.process_count(), *value.shape[1:])
        out[name] = jax.make_array_from_process_local_data(sharding.batch, value, shape)
    return out


def to_host(tree):
    """Replicated (or fully local) arrays -> numpy, read from a local replica."""

    def fetch(value):
        if isinstance(value, jax.Array) and not value.is_fully_addressable:
            return np.asarray(value.addressable_data(0))
        return np.asarray(value)

    return jax.tree.map(fetch, tree)


def gather_rows(tree):
    """Arrays split over the data axis -> the whole global array, on every
    process (numpy)."""
    if jax.process_count() == 1:
        return jax.tree.map(np.asarray, tree)
    return multihost_utils.process_allgather(tree, tiled=True)


def is_primary() -> bool:
    """Whether this process writes the run's files (process 0)."""
    return jax.process_index() == 0


def sync(name: str) -> None:
    """Waits until every process reaches the barrier ``name``."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)
