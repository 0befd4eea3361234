"""Data-parallel jobs over many ROOT files: partitions, seeds, executors, productions.

* :mod:`~hepgen.parallel.partitions`: entry ranges of files and seeds by (file, entry range);
* :mod:`~hepgen.parallel.executor`: in-process, a local Dask cluster or a Dask scheduler;
* :mod:`~hepgen.parallel.production`: a per-event job over many files, outputs and manifest.

Dask (``dask.distributed``) is optional (``pip install 'hepgen[dask]'``) and imported only
when a cluster is asked for.
"""

from hepgen.parallel.executor import Executor, executor, import_distributed
from hepgen.parallel.partitions import (
    SEED_BLOCK,
    Partition,
    block_seeds,
    check_block,
    file_uuid,
    plan_partitions,
    read_partition,
    row_uniforms,
)
from hepgen.parallel.production import (
    LAYOUTS,
    MANIFEST,
    PartitionJob,
    check_outputs,
    output_names,
    produce,
)

__all__ = [
    "LAYOUTS",
    "MANIFEST",
    "SEED_BLOCK",
    "Executor",
    "Partition",
    "PartitionJob",
    "block_seeds",
    "check_block",
    "check_outputs",
    "executor",
    "file_uuid",
    "import_distributed",
    "output_names",
    "plan_partitions",
    "produce",
    "read_partition",
    "row_uniforms",
]
