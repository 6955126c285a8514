"""The exact self-kNN of a data set sharded over a Ray cluster, using the symmetry of the join.

::

    import faiss_nn.ray
    ds = faiss_nn.ray.self_knn("s3://bucket/embeddings/*.parquet", k=10, shards=8)
    ds.write_parquet("out/")          # or: output="out/" writes the files directly

How it runs (see ``docs/ray.md`` in the repository for the cost model):

- The rows are split into ``B`` contiguous blocks with global row numbers, stored in Ray's
  object store (a Ray Dataset's blocks are converted to float32 matrices by tasks on the
  cluster, never on the driver). Each block has an owner among ``P`` actors (``shards``).
- **Symmetric schedule** (default): each block's self-join runs on its owner, and each unordered
  block pair ``(I, J)``, ``I < J``, runs once, on the owner of ``I`` or of ``J`` (alternating, so
  every actor gets its share); the other block travels to it through the object store. One pair
  yields exact candidates for the rows of ``I`` from ``J`` *and* for the rows of ``J`` from ``I``:
  about half the products of the broadcast schedule.
- **Broadcast schedule** (``schedule="broadcast"``, for comparison): every query block is searched
  against every block on the block's owner: all ``B²`` ordered pairs, each in full (a block
  against itself too), the ``n²`` products of the design it stands for.
- Per row block, its owner merges the candidates (our merge: best first, ties to the lower global
  index) and writes or returns that block's result. Nothing but row counts and file names comes
  back to the driver.

The result is identical to :func:`faiss_nn.self_knn` on the whole matrix, whatever ``shards``
and ``block_rows``: every pair's scores are exact (re-scored in float64), each row is left out of
its own list by global index, and ties go to the lower global index.

Faults: actors keep no data between calls (each call names its blocks by object reference,
resolved from the node's shared-memory store without a copy), so a dead actor is simply
restarted (``max_restarts``) and its unfinished calls retried (``max_task_retries``). Every pair's
result is one Ray object, merged exactly once. When retries run out the call raises
:class:`RayRunError` and, with ``output=``, leaves no files. The pool of actors is reused by later
calls with the same resources; :func:`shutdown` ends it.

Needs ``pip install 'faiss-nn[ray]'``.
"""

from __future__ import annotations

import contextlib
import glob
import math
import os
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

try:
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
except ImportError as e:  # pragma: no cover - exercised only without ray
    raise ImportError("faiss_nn.ray needs Ray: pip install 'faiss-nn[ray]'") from e

from . import _faiss_nn as _native
from . import _check_bool, _column_matrix, as_matrix
from ._errors import FaissNNError, InvalidInputError, IoError

__all__ = [
    "self_knn",
    "range_pairs",
    "dedup",
    "shutdown",
    "RayRunError",
    "SCHEDULES",
    "plan_blocks",
    "pair_owners",
    "block_owner",
]

SCHEDULES = ("symmetric", "broadcast")


class RayRunError(FaissNNError, RuntimeError):
    """The distributed run failed (an actor or task died after its retries); nothing was written."""


# ---------------------------------------------------------------------------------------------
# Planning (pure functions: tested without a cluster)


def plan_blocks(n: int, shards: int, block_rows: Optional[int] = None) -> List[Tuple[int, int]]:
    """``[(start, stop)]``: ``n`` rows in contiguous blocks, at least two per shard (so that the
    pairs spread evenly) unless ``block_rows`` fixes their size."""
    if n <= 0:
        raise InvalidInputError("the data set has no rows")
    if block_rows is None:
        count = min(n, max(1, 2 * shards))
        block_rows = math.ceil(n / count)
    if block_rows <= 0:
        raise InvalidInputError(f"invalid block_rows: {block_rows}: a block needs at least one row")
    return [(s, min(n, s + block_rows)) for s in range(0, n, block_rows)]


def block_owner(block: int, blocks: int, shards: int) -> int:
    """The actor holding ``block``: contiguous runs of blocks per actor."""
    return block * shards // blocks


def pair_owners(blocks: int, shards: int) -> List[Tuple[int, int, int]]:
    """``[(I, J, actor)]`` for every block pair ``I <= J``: the diagonal on the block's owner;
    ``I < J`` alternately on the owner of ``I`` or of ``J`` by the parity of ``I + J``, so each
    block's pairs split about evenly between its owner and the others."""
    out = []
    for i in range(blocks):
        for j in range(i, blocks):
            b = i if (i == j or (i + j) % 2 == 0) else j
            out.append((i, j, block_owner(b, blocks, shards)))
    return out


# ---------------------------------------------------------------------------------------------
# Cluster side


def _keys_to_scores(keys: np.ndarray, metric: Any) -> np.ndarray:
    # Keys are "smaller is better": L2 distances as they are, inner products and cosines negated.
    return keys if metric == 1 else np.negative(keys)


def _check_finite(x: np.ndarray, start: int, what: str) -> None:
    """Names the first NaN / infinite value by its global row (a block would name its own).
    Checked in slices of rows, so the mask never costs more than a few MiB beside the data."""
    step = max(1, (1 << 22) // max(1, x.shape[1] if x.ndim == 2 else 1))
    for r0 in range(0, x.shape[0], step):
        bad = ~np.isfinite(x[r0 : r0 + step])
        if bad.any():
            r, c = np.unravel_index(int(np.flatnonzero(bad.ravel())[0]), bad.shape)
            raise InvalidInputError(
                f"{what}: row {start + r0 + r}, component {c} is {x[r0 + r, c]}; every value must be finite"
            )


def _arrow(block: Any) -> Any:
    """A Ray Dataset's block (Arrow or pandas) as an Arrow table."""
    import pyarrow as pa

    return block if isinstance(block, pa.Table) else pa.Table.from_pandas(block, preserve_index=False)


@ray.remote
def _first_dimension(block: Any, column: str) -> Optional[int]:
    """The number of values in the first row of the data set's first block (row 0), or None
    where that row cannot be read (the block's own conversion then names the error)."""
    try:
        return int(_column_matrix(_arrow(block).slice(0, 1), column, 0).shape[1])
    except InvalidInputError:
        return None


@ray.remote(num_returns=2)
def _to_matrix(block: Any, column: str, start: int, dim0: Optional[int]) -> Tuple[np.ndarray, Tuple[int, int]]:
    """An Arrow (or pandas) block of a Ray Dataset (global rows ``start ..``) → its matrix and
    its shape (errors name global rows; every row must have ``dim0`` values, row 0's number)."""
    x = np.ascontiguousarray(_column_matrix(_arrow(block), column, start, dim0))
    _check_finite(x, start, f"column {column!r}")
    return x, (int(x.shape[0]), int(x.shape[1]))


class _BlockWorker:
    """One actor of a pool. It keeps no data between calls: every call names its blocks by
    object reference, which Ray resolves from the node's shared-memory object store without a
    copy (a block crosses to another node once, then stays cached there). So a pool serves any
    number of runs, and an actor that restarts after a fault needs nothing back."""

    def __init__(self, fail_after: Optional[Tuple[int, str]] = None) -> None:
        self.calls = 0
        # Fault injection for the tests: exit after this many calls, once (marker file).
        self.fail_after = fail_after

    def _tick(self) -> None:
        self.calls += 1
        if self.fail_after is not None:
            after, marker = self.fail_after
            if self.calls > after and not os.path.exists(marker):
                Path(marker).write_text("died")
                os._exit(1)

    def self_join(self, job: "_Job", i: int, block: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        self._tick()
        return _native._block_self_join(
            block, job.starts[i], job.k, job.metric, job.device, job.threads, job.precision, job.approximate
        )

    def pair_join(self, job: "_Job", i: int, j: int, a: np.ndarray, b: np.ndarray) -> Tuple[Any, Any]:
        """Block pair (i, j), i < j: candidates for the rows of i from j, and of j from i."""
        self._tick()
        ia, ka, ib, kb = _native._block_pair_join(
            a, job.starts[i], b, job.starts[j], job.k, job.metric, job.device, job.threads, job.precision, job.approximate
        )
        return (ia, ka), (ib, kb)

    def search(self, job: "_Job", i: int, j: int, queries: np.ndarray, block: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Candidates from block ``j`` for the rows of block ``i`` (the broadcast schedule)."""
        self._tick()
        if i == j:
            # The broadcast design searches a block against itself like any other pair (all of
            # its products). Given the very same rows, the native search would recognise its
            # own block and run the half-cost self-join; a copy of the queries keeps the
            # schedule what it stands for (each row still leaves itself out, by global index).
            queries = queries.copy()
        return _native._block_search(
            queries, job.starts[i], block, job.starts[j], job.k, job.metric, job.device, job.threads,
            job.precision, job.approximate,
        )

    def range_self(self, job: "_RangeJob", i: int, block: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Block i's own passing pairs (i < j), global rows."""
        self._tick()
        return _native._block_range_self(block, job.starts[i], job.threshold, job.metric, job.max_pairs, job.threads)

    def range_pair(self, job: "_RangeJob", i: int, j: int, a: np.ndarray, b: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The passing pairs of block pair (i, j), i < j: each pair computed once."""
        self._tick()
        return _native._block_range_pair(a, job.starts[i], b, job.starts[j], job.threshold, job.metric, job.max_pairs, job.threads)

    def merge(self, job: "_Job", i: int, source: Any, output: Optional[str], *parts: Tuple[np.ndarray, np.ndarray]) -> Any:
        """Merges row block ``i``'s candidates and writes or returns its result (on an actor of
        the pool: the pool holds every CPU it asked for, so no other task need be scheduled)."""
        self._tick()
        return _merge_block(job.k, job.metric, job.starts[i], source, output, i, *parts)

    def ping(self) -> int:
        return os.getpid()


class _Job:
    """What every call of one run shares (small: sent with each call)."""

    def __init__(
        self, starts: List[int], k: int, metric: Any, threads: Optional[int], device: Any, precision: str, approximate: bool
    ) -> None:
        self.starts, self.k, self.metric, self.threads, self.device = starts, k, metric, threads, device
        self.precision, self.approximate = precision, approximate


class _RangeJob:
    """What every call of one threshold join shares."""

    def __init__(self, starts: List[int], threshold: float, metric: Any, max_pairs: Optional[int], threads: Optional[int]) -> None:
        self.starts, self.threshold, self.metric, self.max_pairs, self.threads = starts, threshold, metric, max_pairs, threads


# Actors kept for later runs with the same resources in the same Ray session (`keep_actors`):
# starting an actor (a process that imports numpy and this package) costs about a second, but a
# kept actor holds its CPUs (and GPUs), which other Ray work then cannot use.
_POOLS: Dict[Tuple[Any, ...], List[Any]] = {}


class _Pool(list):
    """A call's actors, in shard order, the placement group that holds their resources, and
    the Ray session (:func:`_session`) they belong to."""

    group: Any = None
    session: Any = None


def _session() -> Tuple[str, str]:
    """This driver's Ray session: its job and its node. A job id alone repeats: a new local
    cluster (``ray.shutdown()`` then ``ray.init()``) numbers its jobs from the start again, and a
    pool of the old one must not be taken for this one's."""
    ctx = ray.get_runtime_context()
    return ctx.get_job_id(), ctx.get_node_id()


def _pool(
    shards: int,
    cpus: float,
    gpus: float,
    max_restarts: int,
    max_task_retries: int,
    fail_after: Any,
    keep: bool,
    placement_timeout: float,
) -> Tuple[List[Any], bool]:
    """``(actors, kept)``: a kept pool, or new actors (kept when ``keep`` and no fault is being
    injected)."""
    key = (_session(), shards, cpus, gpus, max_restarts, max_task_retries)
    if fail_after is None and key in _POOLS:
        return _POOLS[key], keep
    # One pool at a time: a pool holds its CPUs (and GPUs) while it lives.
    shutdown()
    room = _room(cpus, gpus)
    # All of the pool's resources are reserved at once, as one placement group, before any actor
    # starts. The nodes may be too small (an autoscaler may add nodes) or busy with other work
    # (it may end), so wait a while rather than refuse at once, but never forever. Actors started
    # one by one would each hold its CPUs while the rest wait, and an actor still pending when the
    # call gives up is not reliably cancelled by ray.kill: it may start later and hold a CPU for
    # the life of the driver. A placement group that is not ready is removed whole.
    # SPREAD (a preference, not a rule): one actor per node where the nodes allow, so that an
    # actor whose threads use its whole node (threads_per_shard=None) does not share it.
    bundle = {"CPU": float(cpus), **({"GPU": float(gpus)} if gpus > 0 else {})}
    group = placement_group([dict(bundle) for _ in range(shards)], strategy="SPREAD")
    workers = _Pool()
    workers.group, workers.session = group, key[0]
    try:
        ready, _ = ray.wait([group.ready()], timeout=placement_timeout)
        if not ready:
            raise InvalidInputError(_placement_message(shards, cpus, gpus, room, placement_timeout))
        ray.get(ready[0])  # raises if the group was removed meanwhile
        cls = ray.remote(_BlockWorker)
        for p in range(shards):
            actor = cls.options(
                num_cpus=cpus,
                num_gpus=gpus,
                max_restarts=max_restarts,
                max_task_retries=max_task_retries,
                scheduling_strategy=PlacementGroupSchedulingStrategy(placement_group=group, placement_group_bundle_index=p),
            )
            workers.append(actor.remote(fail_after if p == 0 else None))
        # Their resources are reserved, so each actor starts as soon as its worker process does;
        # bounded all the same (a worker that never comes up would hang the call).
        start = max(60.0, float(placement_timeout))
        pings = [w.ping.remote() for w in workers]
        started, _ = ray.wait(pings, num_returns=len(pings), timeout=start)
        if len(started) < len(pings):
            raise RayRunError(f"{len(pings) - len(started)} of {len(pings)} actors placed on the cluster did not start within {start:g} s")
        ray.get(pings)
    except ray.exceptions.RayError as e:
        _drop_pool(workers)
        raise RayRunError(f"the actors could not start: {e}") from e
    except BaseException:
        _drop_pool(workers)
        raise
    kept = keep and fail_after is None
    if kept:
        _POOLS[key] = workers
    return workers, kept


def _nodes() -> List[Dict[str, float]]:
    return [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]


def _room(cpus: float, gpus: float) -> float:
    """How many actors of ``cpus`` CPUs and ``gpus`` GPUs the cluster's nodes hold now (each
    actor's share on one node)."""

    def fits(r: Dict[str, float]) -> float:
        counts = [r.get(name, 0) // need for name, need in (("CPU", cpus), ("GPU", gpus)) if need > 0]
        return min(counts) if counts else math.inf

    return sum(fits(r) for r in _nodes())


def _placement_message(shards: int, cpus: float, gpus: float, room: float, waited: float) -> str:
    nodes = _nodes()
    total_cpu = sum(r.get("CPU", 0) for r in nodes)
    total_gpu = sum(r.get("GPU", 0) for r in nodes)
    if room >= shards:
        why = f"the cluster has room for {room:g} such actor(s) but not all of them were free within {waited:g} s: its CPUs (or GPUs) are busy with other work"
    else:
        why = f"room for {room:g} such actor(s); none was added within {waited:g} s"
    return (
        f"{shards} shards of {cpus:g} CPU(s) and {gpus:g} GPU(s) each do not fit this Ray cluster "
        f"({len(nodes)} node(s), {total_cpu:g} CPUs, {total_gpu:g} GPUs: {why}); lower shards, "
        f"threads_per_shard or num_gpus_per_shard, or raise placement_timeout"
    )


def _remove_output(tmp_dir: Optional[Path], merged: List[Any]) -> None:
    """Removes a failed run's temporary output once no merge can write into it any more."""
    if tmp_dir is None:
        return
    try:
        ray.wait(merged, num_returns=len(merged), timeout=60)
    except Exception:  # noqa: BLE001 - settling only; the run's own error is raised
        pass
    shutil.rmtree(tmp_dir, ignore_errors=True)


def _native_error(e: BaseException) -> Optional[FaissNNError]:
    """The faiss-nn error a Ray task or actor call raised (bad input, no GPU, ...), as a fresh
    exception of the same kind, or None."""
    cause = getattr(e, "cause", None)
    return type(cause)(str(cause)) if isinstance(cause, FaissNNError) else None


def shutdown() -> None:
    """Ends every cached actor pool of this process (they also end with the Ray session)."""
    for workers in list(_POOLS.values()):
        _drop_pool(workers)
    _POOLS.clear()


def _drop_pool(workers: List[Any]) -> None:
    """Ends a pool's actors, then removes its placement group. In this order: a restartable
    actor whose group is removed under it waits, restarting, for as long as the session lives.
    A pool of an earlier Ray session ended with that session: there is nothing to end (and
    calling Ray would start a new local session)."""
    for key, pool in list(_POOLS.items()):
        if pool is workers:
            del _POOLS[key]
    group, workers.group = getattr(workers, "group", None), None
    if not ray.is_initialized() or getattr(workers, "session", None) != _session():
        return
    for w in workers:
        try:
            ray.kill(w)
        except Exception:  # noqa: BLE001 - already gone
            pass
    if group is not None:
        try:
            remove_placement_group(group)
        except Exception:  # noqa: BLE001 - already removed
            pass


def _merge_block(
    k: int,
    metric: int,
    start: int,
    source: Any,
    output: Optional[str],
    index: int,
    *parts: Tuple[np.ndarray, np.ndarray],
) -> Any:
    """Merges one row block's candidates; writes a Parquet file (returns its name) or returns an
    Arrow table."""
    import pyarrow as pa

    ids, keys = _native._merge_lists(list(parts), k)
    scores = _keys_to_scores(keys, metric)
    n = ids.shape[0]
    if source is None:
        table = pa.table({"row": pa.array(np.arange(start, start + n, dtype=np.int64))})
    else:
        table = _arrow(source)
    offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
    table = table.append_column("nn_indices", pa.ListArray.from_arrays(offsets, pa.array(ids.reshape(-1))))
    table = table.append_column("nn_scores", pa.ListArray.from_arrays(offsets, pa.array(scores.reshape(-1))))
    if output is None:
        return table
    import pyarrow.parquet as pq

    name = f"part-{index:05d}.parquet"
    pq.write_table(table, os.path.join(output, name))
    return name


# ---------------------------------------------------------------------------------------------
# Driver side


def _metric_code(metric: Any) -> Any:
    """The metric as the block primitives take it: 1 (L2), 0 (inner product) or "cosine"."""
    if metric is None:
        return 1
    if isinstance(metric, str):
        names = {"l2": 1, "ip": 0, "inner_product": 0, "cosine": "cosine", "cos": "cosine"}
        if metric.lower() not in names:
            raise InvalidInputError(f"invalid metric: {metric!r}: the distributed join runs \"l2\", \"ip\" or \"cosine\"")
        return names[metric.lower()]
    if isinstance(metric, bool) or not isinstance(metric, (int, np.integer)) or int(metric) not in (0, 1):
        raise InvalidInputError(f"invalid metric: {metric!r}: the distributed join runs \"l2\" (1), \"ip\" (0) or \"cosine\"")
    return int(metric)


def _is_path_source(source: Any) -> bool:
    return isinstance(source, (str, os.PathLike)) or (
        isinstance(source, (list, tuple)) and bool(source) and all(isinstance(s, (str, os.PathLike)) for s in source)
    )


def _is_dataset(source: Any) -> bool:
    """A Ray Dataset, told without importing Ray Data (which needs pandas): no Dataset exists
    unless Ray Data was imported already."""
    data = sys.modules.get("ray.data")
    return data is not None and isinstance(source, data.Dataset)


def _ray_data() -> Any:
    try:
        import ray.data
    except ImportError as e:
        raise ImportError(f"reading Parquet files or Ray Datasets needs Ray Data: pip install 'ray[data]' ({e})") from e
    return ray.data


def _source_blocks(source: Any, column: str, shards: int, block_rows: Optional[int]):
    """``(block_refs, bounds, source_refs)``: float32 matrices in the object store, their global
    row ranges, and (for a Ray Dataset) the Arrow blocks the output extends; rows in the
    source's order. A matrix source needs neither Ray Data nor pandas."""
    if not (_is_path_source(source) or _is_dataset(source)):
        x = as_matrix(source, "embeddings")
        _check_finite(x, 0, "embeddings")
        bounds = plan_blocks(x.shape[0], shards, block_rows)
        return [ray.put(np.ascontiguousarray(x[s:e])) for s, e in bounds], bounds, None
    _ray_data()
    with _ordered():
        return _source_blocks_in_order(source, column, shards, block_rows)


def _source_blocks_in_order(source: Any, column: str, shards: int, block_rows: Optional[int]):
    if _is_path_source(source):
        paths = _parquet_paths(source)
        # One read per file, joined in order (a union keeps its parts' order; a list handed to
        # one read_parquet is listed by Ray in an order of its own, and some Ray/fsspec pairs
        # cannot list one at all).
        parts = [ray.data.read_parquet(p) for p in paths]
        source = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    # A Ray Dataset (a Parquet source was read into one above); its tasks need CPUs that kept
    # actors would hold.
    shutdown()
    # Read once: counting and then splitting a lazy dataset would run the whole read twice. A
    # Dataset runs under the settings it was made with (a copy), so a caller's Dataset keeps
    # its rows' order only when its own context asks for it (_ordered covers those made here).
    opts = source.context.execution_options
    before = opts.preserve_order
    opts.preserve_order = True
    try:
        ds = source.materialize()
    finally:
        opts.preserve_order = before
    n = ds.count()
    bounds = plan_blocks(n, shards, block_rows)
    # One dataset block per row block: split at the planned row boundaries, on the cluster.
    splits = ds.split_at_indices([s for s, _ in bounds[1:]])
    arrow_refs, block_refs, shape_refs = [], [], []
    dim0 = None
    for part, (start, _) in zip(splits, bounds):
        refs = part.to_arrow_refs()
        table = _concat_tables.remote(*refs) if len(refs) != 1 else refs[0]
        if dim0 is None:
            # Row 0's dimension, which every block checks its rows against (a reference the
            # tasks receive resolved; only a number travels).
            dim0 = _first_dimension.remote(table, column)
        matrix, shape = _to_matrix.remote(table, column, start, dim0)
        arrow_refs.append(table)
        block_refs.append(matrix)
        shape_refs.append(shape)
    # Only the blocks' shapes come to the driver; a bad block raises its own error here, the
    # first block's in row order (the blocks run at once; the first to fail may be a later one).
    try:
        shapes = [ray.get(ref) for ref in shape_refs]
    except ray.exceptions.RayTaskError as e:
        native = _native_error(e)
        if native is not None:
            raise native from None
        raise
    got, want = [r for r, _ in shapes], [e - s for s, e in bounds]
    if got != want:
        raise RayRunError(f"the data set's blocks hold {got} rows, expected {want}")
    return block_refs, bounds, arrow_refs


def _number(name: str, value: Any, least: float, integer: bool = False) -> None:
    """Refuses, as the package's own error, an argument Ray would reject with its own (or
    after the actors start): not a number (an integer where `integer`), or below `least`."""
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, kinds) or value < least or (not integer and not math.isfinite(value)):
        what = "an integer" if integer else "a number"
        raise InvalidInputError(f"invalid {name}: {value!r}: expected {what} of at least {least:g}")


def _parquet_paths(source: Any) -> List[str]:
    """A Parquet source as a list of files in a fixed order (the rows' order is the files'): a
    local directory's files sorted by path (hidden and ``_`` names skipped, as Ray Data does), a
    glob pattern's matches sorted, a list as given; a local path that does not exist refused.
    Remote paths (``s3://…``) go to Ray Data as they are."""
    paths = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    out: List[str] = []
    for p in map(os.fspath, paths):
        if "://" in p:
            out.append(p)
        elif glob.has_magic(p):
            matched = sorted(glob.glob(p))
            if not matched:
                raise IoError(f"cannot read {p!r}: no file matches the pattern")
            out.extend(matched)
        elif os.path.isdir(p):
            found = []
            for root, dirs, files in os.walk(p):
                dirs[:] = [d for d in dirs if not d.startswith((".", "_"))]  # not walked into
                found.extend(os.path.join(root, f) for f in files if not f.startswith((".", "_")))
            found.sort()
            if not found:
                raise IoError(f"cannot read {p!r}: the directory holds no files")
            out.extend(found)
        elif not os.path.exists(p):
            raise IoError(f"cannot read {p!r}: no such file or directory")
        else:
            out.append(p)
    return out


@contextlib.contextmanager
def _ordered() -> Any:
    """Ray Data keeps the rows in the source's order meanwhile (its default may reorder blocks
    for speed, and the neighbours' indices are row positions)."""
    ctx = ray.data.DataContext.get_current()
    before = ctx.execution_options.preserve_order
    ctx.execution_options.preserve_order = True
    try:
        yield
    finally:
        ctx.execution_options.preserve_order = before


@ray.remote
def _concat_tables(*tables: Any) -> Any:
    import pyarrow as pa

    tables = [_arrow(t) for t in tables]
    return pa.concat_tables(tables) if tables else pa.table({})


def self_knn(
    source: Any,
    k: int = 1,
    metric: Union[int, str, None] = "l2",
    *,
    shards: int = 2,
    block_rows: Optional[int] = None,
    column: str = "embedding",
    output: Optional[Union[str, os.PathLike]] = None,
    schedule: str = "symmetric",
    threads_per_shard: Optional[int] = 1,
    num_gpus_per_shard: float = 0,
    device: Any = None,
    max_restarts: int = 3,
    max_task_retries: int = 3,
    collect: bool = False,
    keep_actors: bool = False,
    placement_timeout: float = 60.0,
    precision: str = "auto",
    approximate: bool = False,
    _fail_after: Optional[Tuple[int, str]] = None,
) -> Any:
    """Every row's ``k`` nearest other rows, computed by ``shards`` Ray actors.

    Args:
        source: a Ray Dataset, a Parquet path / glob / list of paths (read with
            ``ray.data.read_parquet``), or an ``n × d`` matrix (numpy array or sequence of rows).
        k, metric: as in :func:`faiss_nn.self_knn` (flat ``"l2"`` or ``"ip"``).
        shards: actors holding the blocks (each with ``threads_per_shard`` CPU threads and
            ``num_gpus_per_shard`` GPUs; with a GPU, pass ``device=0``: Ray sets each actor's
            visible device).
        block_rows: rows per block (default: ``n / (2·shards)``, rounded up). Each pair of
            blocks is one Ray task (a few milliseconds of scheduling each), so ``B`` blocks cost
            ``B·(B+1)/2`` tasks (``B²`` under ``schedule="broadcast"``): keep blocks large
            (thousands of rows) unless testing.
        column: the embedding column of a table source.
        output: a directory to write ``part-NNNNN.parquet`` files into (one per block, in row
            order); it must not exist. The files appear together at the end (written into a
            temporary sibling, then renamed); on failure nothing is left.
        schedule: ``"symmetric"`` (each block pair once) or ``"broadcast"`` (every query block
            against every block).
        max_restarts, max_task_retries: Ray's fault tolerance of the actors.
        collect: return ``(indices, scores)`` numpy arrays on the driver instead (for data that
            fits one machine, as the distilabel step does).
        keep_actors: keep the actors for the next call with the same resources (an actor
            costs about a second to start) until :func:`shutdown` or the end of the Ray
            session. Kept actors hold their CPUs and GPUs, so no other Ray work (Ray Data
            included) can use them meanwhile; they are ended anyway before a Ray Dataset or
            Parquet source is read and before a Ray Dataset is returned, whose blocks need CPUs.
        placement_timeout: where the cluster cannot place ``shards`` actors now (nodes too
            small, or CPUs busy with other work), how many seconds to wait for an autoscaler or
            that work before refusing the run. The actors' resources are reserved all at once
            (one placement group), so a waiting call holds none, and a refused one none after.
        precision, approximate: as in :func:`faiss_nn.self_knn`, for each block's search on its
            actor (each actor's CPU or GPU plans its own products). The lists are exact at every
            precision but a GPU's ``"tf32"``; with ``approximate=True`` each block's reduced-precision
            lists are unproven, so the merged lists may miss a neighbour and may differ from
            the single-process ones.

    Raises:
        InvalidInputError: bad arguments or data (also when found by an actor), or actors this
            cluster could not place within ``placement_timeout``.
        UnsupportedError: e.g. a GPU asked for where an actor has none.
        RayRunError: the run failed in Ray itself (actors lost beyond their restarts).

    Returns:
        the directory (with ``output``), ``(indices, scores)`` (with ``collect``), else a Ray
        Dataset in row order: the source's columns (or ``row``, the global row number, for a
        matrix source) plus ``nn_indices`` and ``nn_scores``.
    """
    if schedule not in SCHEDULES:
        raise InvalidInputError(f"invalid schedule: {schedule!r}: expected one of {', '.join(SCHEDULES)}")
    if isinstance(shards, bool) or not isinstance(shards, (int, np.integer)) or shards < 1:
        raise InvalidInputError(f"invalid shards: {shards!r}: expected a positive number of actors")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidInputError(f"k = {k!r} is invalid: at least one neighbour must be asked for")
    if output is not None and collect:
        raise InvalidInputError("pass output= or collect=True, not both")
    if block_rows is not None:
        _number("block_rows", block_rows, 1, integer=True)
    if threads_per_shard is not None:
        _number("threads_per_shard", threads_per_shard, 1, integer=True)
    _number("num_gpus_per_shard", num_gpus_per_shard, 0)
    _number("max_restarts", max_restarts, -1, integer=True)
    _number("max_task_retries", max_task_retries, -1, integer=True)
    _number("placement_timeout", placement_timeout, 0)
    _native._check_precision(precision)
    _check_bool("approximate", approximate)
    out_dir = tmp_dir = None
    if output is not None:
        # Resolved here: the actors write it, from working directories of their own.
        out_dir = Path(output).resolve()
        if out_dir.exists():
            raise InvalidInputError(f"output directory {str(out_dir)!r} already exists")
        if not out_dir.parent.is_dir():
            raise InvalidInputError(f"cannot write {str(out_dir)!r}: {str(out_dir.parent)!r} is not a directory")
        tmp_dir = out_dir.parent / f".{out_dir.name}.faiss-nn-tmp-{uuid.uuid4().hex[:12]}"
    code = _metric_code(metric)
    k = int(k)
    if not ray.is_initialized():
        ray.init()

    block_refs, bounds, arrow_refs = _source_blocks(source, column, int(shards), block_rows)
    n = bounds[-1][1]
    if k > n - 1:
        raise InvalidInputError(f"k = {k} is invalid: the data set has {n} rows, so at most {n - 1} other rows")
    blocks = len(bounds)
    shards = min(int(shards), blocks)

    # The blocks exist before the actors take their CPUs (conversion tasks need one each);
    # nothing is fetched to the driver.
    ray.wait(block_refs, num_returns=len(block_refs), fetch_local=False)
    dataset_out = tmp_dir is None and not collect
    workers, kept = _pool(
        shards, threads_per_shard or 1, num_gpus_per_shard, max_restarts, max_task_retries, _fail_after,
        keep_actors and not dataset_out,
        placement_timeout,
    )
    merged: List[Any] = []
    try:
        job = _Job([s for s, _ in bounds], k, code, threads_per_shard, device, precision, bool(approximate))

        def owner(b: int) -> Any:
            return workers[block_owner(b, blocks, shards)]

        # Candidates per row block: refs to (ids, keys).
        parts: List[List[Any]] = [[] for _ in range(blocks)]
        if schedule == "symmetric":
            for i, j, p in pair_owners(blocks, shards):
                if i == j:
                    parts[i].append(workers[p].self_join.remote(job, i, block_refs[i]))
                else:
                    ci, cj = workers[p].pair_join.options(num_returns=2).remote(job, i, j, block_refs[i], block_refs[j])
                    parts[i].append(ci)
                    parts[j].append(cj)
        else:
            for j in range(blocks):
                for i in range(blocks):
                    parts[i].append(owner(j).search.remote(job, i, j, block_refs[i], block_refs[j]))
        if tmp_dir is not None:
            tmp_dir.mkdir()
        merged = [
            owner(i).merge.remote(
                job,
                i,
                arrow_refs[i] if arrow_refs is not None else None,
                str(tmp_dir) if tmp_dir is not None else None,
                *parts[i],
            )
            for i in range(blocks)
        ]
        if tmp_dir is not None:
            ray.get(merged)
            tmp_dir.rename(out_dir)
            return str(out_dir)
        if collect:
            tables = ray.get(merged)
            ids = np.concatenate([np.asarray(t.column("nn_indices").combine_chunks().flatten()) for t in tables])
            scores = np.concatenate([np.asarray(t.column("nn_scores").combine_chunks().flatten()) for t in tables])
            return ids.reshape(n, k), scores.reshape(n, k).astype(np.float32, copy=False)
        ray.wait(merged, num_returns=len(merged))
        ray.get(merged)  # raise here, on the driver, if any block failed
        # The merged tables belong to the driver and outlive the actors, which go first: the
        # Dataset's own tasks need the CPUs they hold.
        _drop_pool(workers)
        return ray.data.from_arrow_refs(merged)
    except (ray.exceptions.RayError, OSError) as e:
        native = _native_error(e)
        # A data error leaves the actors sound (kept ones stay); any other may have killed one
        # for good: the next run starts a fresh pool.
        if native is None or not kept:
            _drop_pool(workers)
        _remove_output(tmp_dir, merged)
        if native is not None:
            raise native from None
        raise RayRunError(f"the distributed self-join failed: {e}") from e
    except BaseException:
        _drop_pool(workers)
        _remove_output(tmp_dir, merged)
        raise
    finally:
        if not kept:
            _drop_pool(workers)


# ---------------------------------------------------------------------------------------------
# The threshold join over the cluster: the same symmetric block-pair schedule, each pair's
# passing pairs computed on an actor, the groups merged on the driver by union-find.


def _check_run_args(shards: Any, block_rows: Any, threads_per_shard: Any, max_restarts: Any, max_task_retries: Any, placement_timeout: Any) -> None:
    if isinstance(shards, bool) or not isinstance(shards, (int, np.integer)) or shards < 1:
        raise InvalidInputError(f"invalid shards: {shards!r}: expected a positive number of actors")
    if block_rows is not None:
        _number("block_rows", block_rows, 1, integer=True)
    if threads_per_shard is not None:
        _number("threads_per_shard", threads_per_shard, 1, integer=True)
    _number("max_restarts", max_restarts, -1, integer=True)
    _number("max_task_retries", max_task_retries, -1, integer=True)
    _number("placement_timeout", placement_timeout, 0)


def _distributed_pairs(
    source: Any,
    threshold: Any,
    metric: Any,
    shards: Any,
    block_rows: Any,
    column: str,
    threads_per_shard: Any,
    max_pairs: Any,
    max_restarts: Any,
    max_task_retries: Any,
    keep_actors: bool,
    placement_timeout: Any,
    by_column: Optional[str] = None,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, int, Any]:
    """``(i, j, score, n, by)``: every passing pair of the source, sorted by ``(i, j)``, its row
    count, and (with ``by_column``, for a table source) that column's values in row order."""
    _check_run_args(shards, block_rows, threads_per_shard, max_restarts, max_task_retries, placement_timeout)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.integer, np.floating)):
        raise InvalidInputError(f"invalid threshold: {threshold!r}: expected a number")
    if max_pairs is not None:
        _number("max_pairs", max_pairs, 1, integer=True)
    code = _metric_code("cosine" if metric is None else metric)
    threshold = float(threshold)
    # The threshold's own checks (NaN, a cosine outside [-1, 1)) before any actor starts.
    _native._check_threshold(threshold, code)
    cap = int(max_pairs) if max_pairs is not None else _native.DEFAULT_MAX_PAIRS
    if not ray.is_initialized():
        ray.init()
    block_refs, bounds, arrow_refs = _source_blocks(source, column, int(shards), block_rows)
    n = bounds[-1][1]
    by = None
    if by_column is not None:
        if arrow_refs is None:
            raise InvalidInputError("by names a column, but the source is a matrix; pass the values instead")
        by = ray.get([_column_of.remote(t, by_column) for t in arrow_refs])
    blocks = len(bounds)
    shards = min(int(shards), blocks)
    ray.wait(block_refs, num_returns=len(block_refs), fetch_local=False)
    workers, kept = _pool(shards, threads_per_shard or 1, 0, max_restarts, max_task_retries, None, keep_actors, placement_timeout)
    parts: List[Any] = []
    got: List[Any] = []
    try:
        job = _RangeJob([s for s, _ in bounds], threshold, code, cap, threads_per_shard)
        for i, j, p in pair_owners(blocks, shards):
            if i == j:
                parts.append(workers[p].range_self.remote(job, i, block_refs[i]))
            else:
                parts.append(workers[p].range_pair.remote(job, i, j, block_refs[i], block_refs[j]))
        # Fetched as they finish, counted as they come: a threshold that passes more than the
        # cap stops here, with at most one unit's pairs beyond it on the driver.
        pending, total = list(parts), 0
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            got.append(ray.get(done[0]))
            total += len(got[-1][0])
            if total > cap:
                for ref in pending:
                    ray.cancel(ref)
                kept = False  # its actors may still be busy: this pool ends with the call
                rows = len(np.union1d(np.concatenate([g[0] for g in got]), np.concatenate([g[1] for g in got])))
                raise InvalidInputError(
                    f"threshold {threshold} passes more than max_pairs = {cap} pairs: {total} found among {rows} rows "
                    f"in {len(got)} of {len(parts)} block pairs before the run stopped; raise max_pairs or use a tighter threshold"
                )
    except ray.exceptions.RayError as e:
        native = _native_error(e)
        if native is None or not kept:
            _drop_pool(workers)
        if native is not None:
            raise native from None
        raise RayRunError(f"the distributed threshold join failed: {e}") from e
    except BaseException:
        _drop_pool(workers)
        raise
    finally:
        if not kept:
            _drop_pool(workers)
    i = np.concatenate([g[0] for g in got]) if got else np.empty(0, np.int64)
    j = np.concatenate([g[1] for g in got]) if got else np.empty(0, np.int64)
    score = np.concatenate([g[2] for g in got]) if got else np.empty(0, np.float32)
    order = np.lexsort((j, i))
    return i[order], j[order], score[order], n, by


@ray.remote
def _column_of(table: Any, name: str) -> Any:
    """A column of an Arrow (or pandas) block, for the keep policy's ranking."""
    table = _arrow(table)
    if name not in table.column_names:
        names = ", ".join(repr(c) for c in table.column_names) or "none"
        raise InvalidInputError(f"invalid by: no column {name!r}; the columns are: {names}")
    return table.column(name)


def range_pairs(
    source: Any,
    threshold: float,
    metric: Union[int, str, None] = "cosine",
    *,
    shards: int = 2,
    block_rows: Optional[int] = None,
    column: str = "embedding",
    threads_per_shard: Optional[int] = 1,
    max_pairs: Optional[int] = None,
    max_restarts: int = 3,
    max_task_retries: int = 3,
    keep_actors: bool = False,
    placement_timeout: float = 60.0,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of rows whose exact score passes ``threshold`` (see
    :func:`faiss_nn.range_pairs`), computed by ``shards`` Ray actors over the symmetric block-pair
    schedule of :func:`self_knn` (each block's own pairs on its owner, each unordered block pair
    once). Equal to :func:`faiss_nn.range_pairs` on the whole matrix.

    ``source``, ``shards``, ``block_rows``, ``column``, ``threads_per_shard`` and the fault and
    placement options are :func:`self_knn`'s; ``max_pairs`` caps the whole run (each block pair
    too). Returns ``(i, j, score)`` on the driver, sorted by ``(i, j)``.
    """
    i, j, score, _, _ = _distributed_pairs(
        source, threshold, metric, shards, block_rows, column, threads_per_shard, max_pairs,
        max_restarts, max_task_retries, keep_actors, placement_timeout,
    )
    return i, j, score


def dedup(
    source: Any,
    threshold: float,
    metric: Union[int, str, None] = "cosine",
    keep: str = "first",
    *,
    by: Any = None,
    shards: int = 2,
    block_rows: Optional[int] = None,
    column: str = "embedding",
    threads_per_shard: Optional[int] = 1,
    max_pairs: Optional[int] = None,
    max_restarts: int = 3,
    max_task_retries: int = 3,
    keep_actors: bool = False,
    placement_timeout: float = 60.0,
) -> Tuple[np.ndarray, np.ndarray]:
    """Duplicate groups over the cluster: the passing pairs of :func:`range_pairs`, joined into
    groups by union-find on the driver, each keeping one row by ``keep`` (see
    :func:`faiss_nn.dedup`). ``by`` is one value per row, or for a table source (a Ray Dataset or
    Parquet files) the name of a column. Equal to :func:`faiss_nn.dedup` on the whole matrix.
    Returns ``(group, keep)`` on the driver."""
    from ._dedup import _check_keep, rank_values

    keep = _check_keep(keep, by)
    by_column = by if isinstance(by, str) else None
    i, j, _, n, column_values = _distributed_pairs(
        source, threshold, metric, shards, block_rows, column, threads_per_shard, max_pairs,
        max_restarts, max_task_retries, keep_actors, placement_timeout, by_column,
    )
    ranked = None
    if keep != "first":
        if column_values is not None:
            import pyarrow as pa

            by = pa.chunked_array([c for part in column_values for c in (part.chunks if isinstance(part, pa.ChunkedArray) else [part])])
        ranked = rank_values(by, n)
    return _native._groups_from_pairs(n, i, j, keep, ranked)
