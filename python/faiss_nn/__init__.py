"""faiss_nn: every row's k nearest neighbours among the rows of an embedding dataset.

Exact flat L2 / inner-product search runs on faiss-nn's own multi-threaded CPU kernels (and its
CUDA kernels, when a GPU and its driver are present); every other faiss index factory string and
metric goes to faiss, built into the extension. Three entry points:

- :func:`self_knn`: a matrix in, ``(indices, scores)`` out, each ``n × k``;
- :class:`FlatIndex`: an exact index with faiss's ``IndexFlat`` conventions (``search``,
  ``range_search``);
- :func:`knn_table`: a pyarrow table with an embedding column in, the table plus
  ``nn_indices`` / ``nn_scores`` out;
- :func:`range_pairs`, :func:`dedup`, :func:`dedup_table`: the exact threshold self-join (every
  pair of rows whose score passes a threshold, each pair computed once) and the duplicate groups
  it makes, each keeping exactly one row.

The distilabel steps live in :mod:`faiss_nn.distilabel` (``pip install 'faiss-nn[distilabel]'``).

Each row is left out of its own list *by index* (not by dropping the first hit), ties are broken
by the lower index, and scores are exact: squared L2 distances (ascending), inner products or
cosine similarities (descending). ``metric="cosine"`` normalises copies of the rows (the input
is not modified) and scores the originals in float64; a zero row is refused. Every error is a
:class:`FaissNNError`; bad input is an :class:`InvalidInputError`, which is also a
``ValueError``.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np

from . import _faiss_nn as _native
from ._dedup import OUTPUT_COLUMNS as DEDUP_COLUMNS
from ._dedup import _by_arg, _check_keep, _cpu_note, rank_values
from ._errors import (
    BackendError,
    DeviceError,
    FaissNNError,
    InternalError,
    InvalidInputError,
    IoError,
    OutOfMemoryError,
    UnsupportedError,
)

__version__ = _native.__version__

__all__ = [
    "self_knn",
    "knn_table",
    "range_pairs",
    "dedup",
    "dedup_table",
    "rank_values",
    "FlatIndex",
    "IndexFlatL2",
    "IndexFlatIP",
    "as_matrix",
    "FaissNNError",
    "InvalidInputError",
    "UnsupportedError",
    "DeviceError",
    "OutOfMemoryError",
    "BackendError",
    "IoError",
    "InternalError",
    "METRIC_INNER_PRODUCT",
    "METRIC_L2",
    "METRIC_L1",
    "METRIC_Linf",
    "METRIC_Canberra",
    "METRIC_BrayCurtis",
    "METRIC_JensenShannon",
]

# faiss's METRIC_* integers, so that code need not import faiss to name a metric.
METRIC_INNER_PRODUCT = 0
METRIC_L2 = 1
METRIC_L1 = 2
METRIC_Linf = 3
METRIC_Canberra = 20
METRIC_BrayCurtis = 21
METRIC_JensenShannon = 22

Device = Union[None, int, str, Sequence[int]]


def as_matrix(x: Any, what: str = "embeddings") -> np.ndarray:
    """``x`` as the C-contiguous float32 ``n × d`` matrix the search reads.

    A C-contiguous float32 2-D numpy array is returned as it is (no copy). Other numeric arrays
    (float64, float16, integers; any memory order) are converted; a finite value too large for
    float32 is refused. A sequence of rows (lists, tuples or 1-D arrays of numbers) is packed in
    native code, refusing ragged rows and non-numbers by row and component. ``what`` names the
    input in error messages.
    """
    if isinstance(x, np.ma.MaskedArray):
        # The search would read the masked values as if they were data.
        raise InvalidInputError(
            f"{what}: a masked array; fill the masked values (x.filled(...)) or drop their rows first"
        )
    if isinstance(x, np.ndarray):
        arr = x
    elif isinstance(x, memoryview):
        arr = np.asarray(x)
    elif isinstance(x, (set, frozenset)):
        raise InvalidInputError(
            f"{what}: a {type(x).__name__} has no row order, so its row numbers would mean nothing; pass a list"
        )
    elif isinstance(x, (list, tuple)):
        return _native._pack_rows(x, what)
    elif hasattr(x, "__array__") or hasattr(x, "__array_interface__"):
        arr = np.asarray(x)
    else:
        try:
            len(x)
        except TypeError:
            raise InvalidInputError(
                f"{what}: expected a 2-D array or a sequence of rows, got {type(x).__name__}"
            ) from None
        if isinstance(x, (str, bytes, dict)):
            raise InvalidInputError(
                f"{what}: expected a 2-D array or a sequence of rows, got {type(x).__name__}"
            )
        return _native._pack_rows(list(x), what)

    if arr.dtype == object:
        if arr.ndim == 1:  # e.g. a pandas column of lists or arrays
            return _native._pack_rows(list(arr), what)
        raise InvalidInputError(
            f"{what}: expected an array of numbers, got a {arr.ndim}-D array of Python objects"
        )
    if arr.dtype.kind not in "fiu":
        raise InvalidInputError(
            f"{what}: expected an array of numbers, got dtype {arr.dtype} "
            f"({_KIND_NAMES.get(arr.dtype.kind, 'not numeric')})"
        )
    if arr.ndim != 2:
        hint = "; for a single row use x[None, :]" if arr.ndim == 1 else ""
        raise InvalidInputError(
            f"{what}: expected a 2-D array (rows × dimensions), got {arr.ndim}-D shape {arr.shape}{hint}"
        )
    if arr.dtype == np.float32 and arr.flags.c_contiguous and arr.flags.aligned and arr.dtype.isnative:
        return arr
    # Values beyond float32 become inf here; _check_narrowing names them (numpy's own overflow
    # warning would only precede that error).
    with np.errstate(over="ignore"):
        # np.require also copies a C-contiguous array that is not aligned (np.ascontiguousarray
        # would return it as it is, and the native code reads aligned float32).
        out = np.require(arr.astype(np.float32, copy=False), requirements=["C", "A"])
    if arr.dtype.kind == "f" and arr.dtype.itemsize > 4:
        _check_narrowing(arr, out, what)
    return out


_KIND_NAMES = {
    "b": "booleans",
    "c": "complex numbers",
    "U": "strings",
    "S": "bytes",
    "M": "datetimes",
    "m": "time deltas",
    "V": "structured records",
}


def _check_narrowing(src: np.ndarray, out: np.ndarray, what: str) -> None:
    """Refuses a finite value that became infinite in float32 (NaN/inf are the search's to name)."""
    if np.isfinite(out).all():
        return
    overflow = np.isinf(out) & np.isfinite(src)
    if overflow.any():
        row, col = np.unravel_index(int(np.flatnonzero(overflow.ravel())[0]), out.shape)
        raise InvalidInputError(
            f"{what}: row {row}, component {col} is {float(src[row, col])!r}, which is too large for float32"
        )


def _metric_arg(metric: Any) -> Any:
    # distilabel's metric_type=None means faiss's default, L2.
    return METRIC_L2 if metric is None else metric


def _join_metric(metric: Any) -> Any:
    # The threshold join's default is cosine, also where a caller passes metric=None through.
    return "cosine" if metric is None else metric


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidInputError(f"invalid {name}: {value!r}: expected True or False")


def _check_flags(exclude_self: Any, string_factory: Any, approximate: Any = False) -> None:
    _check_bool("exclude_self", exclude_self)
    _check_bool("approximate", approximate)
    if string_factory is not None and not isinstance(string_factory, str):
        raise InvalidInputError(
            f"invalid string_factory: {string_factory!r}: expected None or a faiss index factory string"
        )


def self_knn(
    embeddings: Any,
    k: int = 1,
    metric: Union[int, str, None] = "l2",
    device: Device = None,
    string_factory: Optional[str] = None,
    search_batch_size: int = 50,
    precision: str = "auto",
    exclude_self: bool = True,
    threads: Optional[int] = None,
    memory_budget: Optional[int] = None,
    train_size: Optional[int] = None,
    shard_mode: str = "sharded",
    search_params: Optional[str] = None,
    approximate: bool = False,
) -> Tuple[np.ndarray, np.ndarray]:
    """For every row of ``embeddings``, its ``k`` nearest other rows.

    Args:
        embeddings: ``n × d`` numbers: a numpy array (a C-contiguous float32 one is read in
            place, without a copy), or a sequence of rows.
        k: neighbours per row; ``1 ≤ k ≤ n − 1`` (``≤ n`` with ``exclude_self=False``).
        metric: ``"l2"`` (squared Euclidean, default), ``"ip"`` (inner product), ``"cosine"``
            (cosine similarity), or a faiss ``METRIC_*`` integer: 0 IP, 1 L2, 2 L1, 3 Linf,
            20 Canberra, 21 BrayCurtis, 22 JensenShannon. ``None`` means L2. Metrics other than
            L2/IP/cosine run on faiss's own flat index or on exact term-by-term code.
        device: ``None`` (CPU), a CUDA device id, a list of ids (repeats allowed: several
            shards on one GPU), or a negative id for every GPU.
        string_factory: a faiss index factory string (``"IVF256,Flat"``, ``"HNSW32"``, …);
            ``None`` or ``"Flat"`` with L2/IP is exact search on faiss-nn's own kernels.
        search_batch_size: query rows per search call of a faiss index.
        precision: the products' arithmetic: ``"auto"`` (the fastest exact path), ``"f32"``,
            ``"bf16"``, ``"int8"``, ``"tf32"``, ``"f16"``. On the CPU every list is exact: bf16
            candidates (AVX-512 BF16) and int8 candidates (AVX-512 VNNI, AVX-VNNI or AVX2) are proven with their
            error bound, the rows it cannot prove searched again in f32; ``"auto"`` takes int8 (with
            AVX-512 VNNI or AVX-VNNI) or bf16 where the CPU has them and a sample predicts the proofs hold. On a GPU
            ``"auto"`` and ``"int8"`` are f32; bf16 and f16 candidates are proven with the tensor
            cores' error bound (rows it cannot prove are searched again in f32 on the CPU);
            ``"tf32"`` lists are re-scored but unproven.
        exclude_self: leave each row out of its own list (by index).
        threads: CPU worker threads (default: every core).
        memory_budget: working memory for the search's tiles, in bytes (default 512 MiB on the
            CPU).
        train_size: at most this many (evenly spaced) rows train a faiss index that needs
            training.
        shard_mode: several GPUs: ``"sharded"`` (rows split) or ``"replicated"`` (queries split).
        search_params: search-time parameters of a faiss index in faiss's syntax, e.g.
            ``"nprobe=16"`` (IVF) or ``"efSearch=64"`` (HNSW); an error with exact flat search.
        approximate: return the lists of reduced-precision products (bf16, f16, int8)
            re-scored exactly but unproven: no row is searched again, so a list may miss a
            neighbour. f32 lists stay exact. Default ``False``.

    Returns:
        ``(indices, scores)``: int64 and float32 arrays of shape ``(n, k)``, best first. A slot
        an approximate index could not fill holds index -1 and score +inf (distances) or -inf
        (similarities).

    Raises:
        InvalidInputError: ragged or non-numeric rows, NaN/inf, ``k`` out of range, an unknown
            metric, device id or factory string.
        UnsupportedError: a GPU asked for where none can be used.
        FaissNNError: any other failure (see its subclasses).

    The GIL is released during the search.
    """
    return _self_knn(
        embeddings, "embeddings", k, metric, device, string_factory, search_batch_size, precision,
        exclude_self, threads, memory_budget, train_size, shard_mode, search_params, approximate,
    )


def _self_knn(
    embeddings: Any,
    what: str,
    k: Any,
    metric: Any,
    device: Any,
    string_factory: Any,
    search_batch_size: Any,
    precision: Any,
    exclude_self: Any,
    threads: Any,
    memory_budget: Any,
    train_size: Any,
    shard_mode: Any,
    search_params: Any = None,
    approximate: Any = False,
) -> Tuple[np.ndarray, np.ndarray]:
    """:func:`self_knn`, naming the input ``what`` in its errors (e.g. a table's column)."""
    _check_flags(exclude_self, string_factory, approximate)
    if search_params is not None and not isinstance(search_params, str):
        raise InvalidInputError(f"invalid search_params: {search_params!r}: expected None or a string such as 'nprobe=16'")
    x = as_matrix(embeddings, what)
    try:
        return _native.self_knn(
            x, k, _metric_arg(metric), device, string_factory, search_batch_size, precision,
            bool(exclude_self), threads, memory_budget, train_size, shard_mode, search_params,
            approximate=bool(approximate),
        )
    except InvalidInputError as e:
        # The native search calls its input "embeddings"; say what the caller passed.
        msg = str(e)
        if what != "embeddings" and msg.startswith("embeddings:"):
            raise InvalidInputError(what + msg[len("embeddings"):]) from None
        raise


class FlatIndex:
    """An exact L2, inner-product or cosine index with faiss's ``IndexFlat`` conventions.

    ``add(x)`` appends rows (labels ``0 .. ntotal``), ``search(x, k)`` returns
    ``(distances float32[nq, k], labels int64[nq, k])`` best first, with label -1 and distance
    +3.4028235e38 (L2) or -3.4028235e38 (inner product, cosine) where the index holds fewer than
    ``k`` rows, as faiss writes them. ``range_search(x, radius)`` returns faiss's
    ``(lims, distances, labels)``. Ties are broken by the lower label. The rows stay loaded
    between searches.

    ``faiss.IndexFlatL2(d)`` becomes ``faiss_nn.FlatIndex(d)`` (or ``faiss_nn.IndexFlatL2(d)``),
    ``faiss.IndexFlatIP(d)`` becomes ``faiss_nn.FlatIndex(d, "ip")``; ``FlatIndex(d, "cosine")``
    is ``IndexFlatIP`` over normalised rows, with exact cosines. ``precision`` and
    ``approximate`` are :func:`self_knn`'s.
    """

    def __init__(
        self,
        d: int,
        metric: Union[int, str] = "l2",
        *,
        device: Device = None,
        threads: Optional[int] = None,
        memory_budget: Optional[int] = None,
        precision: str = "auto",
        approximate: bool = False,
    ) -> None:
        _check_bool("approximate", approximate)
        self._index = _native.FlatIndex(
            d, _metric_arg(metric), device, threads, memory_budget, precision, approximate=bool(approximate)
        )

    def add(self, x: Any) -> None:
        """Appends the rows of ``x`` (``n × d``)."""
        self._index.add(as_matrix(x, "added vectors"))

    def search(self, x: Any, k: int) -> Tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest stored rows of each row of ``x``: ``(distances, labels)``."""
        return self._index.search(as_matrix(x, "queries"), k)

    def range_search(self, x: Any, radius: float) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every stored row within ``radius`` of each row of ``x``, as faiss returns them:
        ``(lims int64[nq + 1], distances float32[total], labels int64[total])``; query ``q``'s
        results are ``labels[lims[q]:lims[q + 1]]``, in label order. A row passes with a squared
        L2 distance strictly below ``radius``, an inner product or cosine strictly above it,
        decided on the exact (float64) score; an infinite radius passes every row, as in faiss.
        An empty batch gives ``lims == [0]``. Runs on the CPU whatever the device (a GPU
        device is noted with a ``RuntimeWarning``)."""
        if self.device != "cpu":
            _cpu_note(self.device, "FlatIndex.range_search")
        return self._index.range_search(as_matrix(x, "queries"), radius)

    def reset(self) -> None:
        """Removes every row."""
        self._index.reset()

    @property
    def ntotal(self) -> int:
        """Rows stored."""
        return self._index.ntotal

    @property
    def d(self) -> int:
        """Dimension."""
        return self._index.d

    @property
    def metric_type(self) -> int:
        """faiss's METRIC_* integer: 1 (L2) or 0 (inner product; cosine too, faiss's recipe for
        it being the inner product of normalised rows)."""
        return self._index.metric_type

    @property
    def metric(self) -> str:
        """The metric's name: ``"l2"``, ``"ip"`` or ``"cosine"``."""
        return self._index.metric

    @property
    def is_trained(self) -> bool:
        """Always True: a flat index needs no training (as in faiss)."""
        return True

    @property
    def device(self) -> str:
        """Where it searches: ``"cpu"``, an id, a list ``"0,1"``, or ``"-1"`` (every GPU)."""
        return self._index.device

    @property
    def loads(self) -> int:
        """How many times the rows were loaded onto the engine (once per search after an add)."""
        return self._index.loads

    def __repr__(self) -> str:
        name = {"l2": "L2", "ip": "IP", "cosine": "cosine"}.get(self.metric, self.metric)
        return f"faiss_nn.FlatIndex(d={self.d}, metric={name}, ntotal={self.ntotal}, device={self.device})"


class IndexFlatL2(FlatIndex):
    """``FlatIndex(d, "l2")``, named like faiss's class."""

    def __init__(self, d: int, **kwargs: Any) -> None:
        super().__init__(d, "l2", **kwargs)


class IndexFlatIP(FlatIndex):
    """``FlatIndex(d, "ip")``, named like faiss's class."""

    def __init__(self, d: int, **kwargs: Any) -> None:
        super().__init__(d, "ip", **kwargs)


def range_pairs(
    embeddings: Any,
    threshold: float,
    metric: Union[int, str, None] = "cosine",
    *,
    max_pairs: Optional[int] = None,
    threads: Optional[int] = None,
    memory_budget: Optional[int] = None,
    device: Device = None,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of rows whose exact score passes ``threshold``: the threshold self-join.

    A pair passes with a cosine similarity or inner product strictly above ``threshold``, or a
    squared L2 distance strictly below it (faiss's ``range_search`` convention), decided on its
    float64 score: the kernels find every pair within their rounding error of the threshold and
    each is scored again in float64, so the list is exact. Each pair is computed once.

    Args:
        embeddings: ``n × d`` numbers (see :func:`as_matrix`).
        threshold: the score a pair must pass (a finite number; a cosine in [-1, 1)).
        metric: ``"cosine"`` (default), ``"ip"`` or ``"l2"``.
        max_pairs: stop with :class:`InvalidInputError` once more pairs than this pass (default:
            what ``memory_budget`` holds, 20 bytes a pair; 26,843,545 for 512 MiB). The error
            says how many pairs were found in how many rows, and suggests a tighter threshold.
        threads, memory_budget: as in :func:`self_knn`.
        device: the join runs on the CPU; a GPU device is noted with a warning.

    Returns:
        ``(i, j, score)``: int64, int64 and float32 arrays, one entry per pair, ``i < j``,
        sorted by ``(i, j)``.
    """
    _cpu_note(device, "range_pairs")
    x = as_matrix(embeddings, "embeddings")
    return _native.range_pairs(x, threshold, _join_metric(metric), max_pairs, threads, memory_budget)


def dedup(
    embeddings: Any,
    threshold: float,
    metric: Union[int, str, None] = "cosine",
    keep: str = "first",
    *,
    by: Any = None,
    max_pairs: Optional[int] = None,
    threads: Optional[int] = None,
    memory_budget: Optional[int] = None,
    device: Device = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Duplicate groups: rows whose score passes ``threshold`` (see :func:`range_pairs`) are
    duplicates of each other, transitively (the connected components of the threshold graph,
    found while the pairs stream out: they are never all held), and each group keeps one row.

    Args:
        embeddings, threshold, metric, max_pairs, threads, memory_budget, device: as in
            :func:`range_pairs`.
        keep: which row a group keeps: ``"first"`` (the lowest row number, default), ``"max"``
            or ``"min"`` (the row with the largest / smallest value of ``by``; ties to the
            lowest row number; missing values never chosen).
        by: with ``keep="max"`` / ``"min"``, one value per row: numbers, booleans, dates and
            times, or texts / bytes / lists (ranked by their length), as a numpy array, pyarrow
            array, pandas Series or list.

    Returns:
        ``(group, keep)``: ``group[r]`` (int64) is the row that ``r``'s group keeps (``r`` itself
        for a kept or unique row); ``keep[r]`` (bool) is True for exactly one row per group.
    """
    keep = _check_keep(keep, by)
    _cpu_note(device, "dedup")
    x = as_matrix(embeddings, "embeddings")
    return _native.dedup(x, threshold, _join_metric(metric), keep, _by_arg(keep, by, x.shape[0]), max_pairs, threads, memory_budget)


def dedup_table(
    table: Any,
    threshold: float,
    column: str = "embedding",
    metric: Union[int, str, None] = "cosine",
    keep: str = "first",
    *,
    by: Optional[str] = None,
    max_pairs: Optional[int] = None,
    threads: Optional[int] = None,
    memory_budget: Optional[int] = None,
    device: Device = None,
    overwrite: bool = False,
) -> "pyarrow.Table":  # noqa: F821
    """The table plus ``dup_group`` (int64: the row its group keeps) and ``keep`` (bool): the
    duplicate groups of :func:`dedup` over the embedding ``column``. ``by`` names the column
    ``keep="max"`` / ``"min"`` ranks by (e.g. a text column: the longest text is kept). A table
    that already has ``dup_group`` or ``keep`` is refused unless ``overwrite=True``. Needs
    pyarrow."""
    pa = _pyarrow()
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    if not isinstance(table, pa.Table):
        raise InvalidInputError(f"dedup_table: expected a pyarrow.Table, got {type(table).__name__}")
    present = [c for c in DEDUP_COLUMNS if c in table.column_names]
    if present and not overwrite:
        raise InvalidInputError(
            f"the table already has column(s) {', '.join(map(repr, present))}; pass overwrite=True to replace them"
        )
    if column in DEDUP_COLUMNS:
        raise InvalidInputError(f"invalid column: {column!r} is an output column name")
    keep = _check_keep(keep, by)
    values = None
    if by is not None:
        if not isinstance(by, str):
            raise InvalidInputError(f"invalid by: {by!r}: name a column of the table")
        values = _table_column(table, by, "invalid by: the table has ", "invalid by: ")
    _cpu_note(device, "dedup_table")
    x = column_matrix(table, column)
    ranked = None if values is None else rank_values(values, x.shape[0], f"column {by!r}")
    try:
        group, kept = _native.dedup(x, threshold, _join_metric(metric), keep, ranked, max_pairs, threads, memory_budget)
    except InvalidInputError as e:
        msg = str(e)
        if msg.startswith("embeddings:"):
            raise InvalidInputError(f"column {column!r}" + msg[len("embeddings"):]) from None
        raise
    out = table
    for name, values_out, typ in (("dup_group", group, pa.int64()), ("keep", kept, pa.bool_())):
        arr = pa.array(values_out, type=typ)
        field = pa.field(name, typ, nullable=False)
        if name in out.column_names:
            out = out.set_column(out.column_names.index(name), field, arr)
        else:
            out = out.append_column(field, arr)
    return out


OUTPUT_COLUMNS = ("nn_indices", "nn_scores")


def knn_table(
    table: Any,
    column: str = "embedding",
    k: int = 1,
    metric: Union[int, str, None] = "l2",
    device: Device = None,
    string_factory: Optional[str] = None,
    search_batch_size: int = 50,
    precision: str = "auto",
    exclude_self: bool = True,
    threads: Optional[int] = None,
    memory_budget: Optional[int] = None,
    train_size: Optional[int] = None,
    shard_mode: str = "sharded",
    overwrite: bool = False,
    search_params: Optional[str] = None,
    approximate: bool = False,
) -> "pyarrow.Table":  # noqa: F821
    """The table plus ``nn_indices`` (``list<int64>``) and ``nn_scores`` (``list<float32>``).

    ``column`` must be a ``list``, ``large_list`` or ``fixed_size_list`` of numbers with no nulls
    and one length in every row; it is read as one buffer (no Python loop over rows). A table
    that already has ``nn_indices`` or ``nn_scores`` is refused unless ``overwrite=True``, which
    replaces them in place. The other arguments are :func:`self_knn`'s. Needs pyarrow.
    """
    pa = _pyarrow()
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    if not isinstance(table, pa.Table):
        raise InvalidInputError(f"knn_table: expected a pyarrow.Table, got {type(table).__name__}")
    if not isinstance(column, str):
        raise InvalidInputError(f"invalid column: {column!r}: expected a column name")
    present = [c for c in OUTPUT_COLUMNS if c in table.column_names]
    if present and not overwrite:
        raise InvalidInputError(
            f"the table already has column(s) {', '.join(map(repr, present))}; "
            "pass overwrite=True to replace them"
        )
    if column in OUTPUT_COLUMNS:
        raise InvalidInputError(f"invalid column: {column!r} is an output column name")
    x = column_matrix(table, column)
    indices, scores = _self_knn(
        x, f"column {column!r}", k, metric, device, string_factory, search_batch_size, precision,
        exclude_self, threads, memory_budget, train_size, shard_mode, search_params, approximate,
    )
    out = table
    for name, values, typ in (
        ("nn_indices", indices, pa.int64()),
        ("nn_scores", scores, pa.float32()),
    ):
        arr = _list_array(pa, values, typ)
        field = pa.field(name, arr.type, nullable=False)
        if name in out.column_names:
            out = out.set_column(out.column_names.index(name), field, arr)
        else:
            out = out.append_column(field, arr)
    return out


def column_matrix(table: "pyarrow.Table", column: str = "embedding") -> np.ndarray:  # noqa: F821
    """A list-of-numbers column of a pyarrow table as an ``n × d`` float32 matrix.

    Reads the column's value buffers (one chunk: no copy of a float32 column); refuses a missing
    column, a non-list or non-numeric type, null rows or values, and ragged rows, naming the row.
    """
    return _column_matrix(table, column, 0)


def _column_matrix(table: Any, column: str, first_row: int, dim0: Optional[int] = None) -> np.ndarray:
    """:func:`column_matrix` of a table whose first row is row ``first_row`` of a larger data
    set (a block of a Ray Dataset): errors name the data set's rows. ``dim0``, where given, is
    the dimension of the data set's row 0, which every row must have (else the table's first
    row is the reference)."""
    pa = _pyarrow()
    col = _table_column(table, column, "table: ", "table: ")
    typ = col.type
    if isinstance(typ, pa.ExtensionType):
        # Ray Data's tensor columns (ray.data.from_numpy, rows holding numpy arrays) extend a
        # list of each row's values: one-dimensional ones are embeddings.
        shape = getattr(typ, "shape", None)
        if shape is not None and len(shape) != 1:
            raise InvalidInputError(f"column {column!r} holds tensors of shape {tuple(shape)}; expected one vector per row")
        col = pa.chunked_array([c.storage for c in col.chunks], type=typ.storage_type)
        typ = col.type
    fixed = pa.types.is_fixed_size_list(typ)
    if not (fixed or pa.types.is_list(typ) or pa.types.is_large_list(typ)):
        raise InvalidInputError(
            f"column {column!r} has type {typ}; expected list<float>, large_list<float> or "
            "fixed_size_list<float> (one embedding per row)"
        )
    vt = typ.value_type
    if not (pa.types.is_floating(vt) or pa.types.is_integer(vt)):
        raise InvalidInputError(f"column {column!r} has type {typ}; its values must be numbers, not {vt}")
    n = len(col)
    if n == 0:
        raise InvalidInputError(f"column {column!r} is empty: no rows")
    if col.null_count:
        row = _first_true(col.is_null())
        raise InvalidInputError(f"column {column!r}: row {first_row + row} is null; every row needs an embedding")
    parts = []
    d: Optional[int] = typ.list_size if fixed else dim0
    reference = first_row if dim0 is None else 0
    if fixed and dim0 is not None and d != dim0:
        raise InvalidInputError(
            f"ragged rows in column {column!r}: row {first_row} has {d} values, expected {dim0} (the dimension of row 0)"
        )
    row0 = first_row
    for chunk in col.chunks:
        m = len(chunk)
        if m == 0:
            continue
        if not fixed:
            lengths = np.diff(chunk.offsets.to_numpy())
            if d is None:
                d = int(lengths[0])
            bad = np.flatnonzero(lengths != d)
            if bad.size:
                r = int(bad[0])
                raise InvalidInputError(
                    f"ragged rows in column {column!r}: row {row0 + r} has {int(lengths[r])} values, "
                    f"expected {d} (the dimension of row {reference})"
                )
        values = chunk.flatten()
        if values.null_count:
            j = _first_true(values.is_null())
            raise InvalidInputError(
                f"column {column!r}: row {row0 + j // max(d, 1)}, component {j % max(d, 1)} is null"
            )
        parts.append(values.to_numpy(zero_copy_only=False))
        row0 += m
    assert d is not None
    if d == 0:
        raise InvalidInputError(f"column {column!r} is empty: row {first_row} has no values")
    flat = parts[0] if len(parts) == 1 else np.concatenate(parts)
    return as_matrix(flat.reshape(n, d), f"column {column!r}")


def _table_column(table: Any, name: str, missing: str, shared: str) -> Any:
    """The table's column ``name``; refuses a missing one (naming those there are, after
    ``missing``) or one whose name several columns share (after ``shared``)."""
    if name not in table.column_names:
        names = ", ".join(repr(c) for c in table.column_names) or "none"
        raise InvalidInputError(f"{missing}no column {name!r}; the columns are: {names}")
    count = table.column_names.count(name)
    if count > 1:
        raise InvalidInputError(f"{shared}{count} columns are named {name!r}; rename all but one")
    return table.column(name)


def _first_true(mask: Any) -> int:
    arr = mask.to_numpy(zero_copy_only=False) if hasattr(mask, "to_numpy") else np.asarray(mask)
    return int(np.flatnonzero(arr)[0])


def _list_array(pa: Any, values: np.ndarray, typ: Any) -> Any:
    """An ``n × k`` array as a list array (``list`` below 2**31 values, else ``large_list``) of
    non-null items, the type the command-line tool writes (so that the tables concatenate)."""
    n, k = values.shape
    flat = pa.array(values.reshape(-1), type=typ)
    item = pa.field("item", typ, nullable=False)
    if n * k < 2**31:
        offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
        return pa.ListArray.from_arrays(offsets, flat, type=pa.list_(item))
    offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int64))
    return pa.LargeListArray.from_arrays(offsets, flat, type=pa.large_list(item))


def _pyarrow() -> Any:
    try:
        import pyarrow
    except ImportError:
        raise ImportError(
            "faiss_nn.knn_table needs pyarrow: pip install 'faiss-nn[arrow]'"
        ) from None
    return pyarrow
