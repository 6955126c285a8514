"""Drop-in replacements for distilabel's ``FaissNearestNeighbour`` and ``EmbeddingDedup`` global
steps, and :class:`ExactEmbeddingDedup`, which goes from ``embedding`` straight to the dedup.

Swap the import and nothing else::

    # from distilabel.steps import FaissNearestNeighbour, EmbeddingDedup
    from faiss_nn.distilabel import FaissNearestNeighbour, EmbeddingDedup

Same runtime parameters with the same defaults (``device``, ``string_factory``, ``metric_type``,
``k``, ``search_batch_size``, ``train_size``), the same input column (``embedding``) and output
columns (``nn_indices``, ``nn_scores``), the same scores (squared L2 distances or inner
products, as faiss reports them) and the same ``faiss_index`` artifact for a flat index. As
there, ``k`` may exceed the other rows (a small dataset): the slots no row fills hold index -1
and score ±3.4028235e38 (float32's largest, faiss's value for an empty slot, also for an
approximate index that found fewer rows), and ``search_batch_size=None`` (or ≤ 0, as
``datasets.map`` reads it) searches in one batch.
Three differences, all deliberate:

- each row is left out of its own list *by index*; distilabel's step searches ``k + 1`` and
  drops the first hit, which on data with duplicate rows drops a twin and keeps the row itself;
- exact flat search runs on faiss-nn's own kernels (re-scored exactly, ties broken by the lower
  index), several times faster and in a fraction of the memory;
- ``train_size`` samples that many rows evenly over the dataset, rather than taking the first.

``metric_type`` also takes ``"cosine"`` (faiss has no integer for it): the rows are normalised by
faiss-nn (the inputs are not modified) and the scores are cosine similarities, descending.

:class:`EmbeddingDedup` reads ``nn_indices`` / ``nn_scores`` as distilabel's does and writes
``keep_row_after_embedding_filtering``, but keeps exactly one row of each group of duplicates
(distilabel's marks every neighbour that passes the threshold, so in a duplicate pair each row
marks the other and both are dropped) and compares in the metric's direction (distilabel's
compares with ``>`` whatever the metric: backwards for L2 distances; unset, the direction is
read from the order of the scores). ``mode="distilabel"`` reproduces distilabel's rule, for
comparison. :class:`ExactEmbeddingDedup` needs no k: it runs the
exact threshold self-join over ``embedding`` (every pair that passes, each computed once) and
writes ``dup_group`` and ``keep_row_after_embedding_filtering``.

Requires ``pip install 'faiss-nn[distilabel]'``; faiss itself is not needed.
"""

# No `from __future__ import annotations`: distilabel reads `process`'s annotation at run time
# and needs the real `StepInput` type there, not a string.

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, Union

import numpy as np

try:
    from distilabel.mixins.runtime_parameters import RuntimeParameter
    from distilabel.steps import GlobalStep, StepInput
except ImportError as e:  # pragma: no cover - exercised only without distilabel
    raise ImportError(
        "faiss_nn.distilabel needs distilabel: pip install 'faiss-nn[distilabel]'"
    ) from e
from pydantic import Field, PrivateAttr

from . import METRIC_INNER_PRODUCT, METRIC_L2, FlatIndex, _self_knn, as_matrix
from . import _faiss_nn as _native
from ._dedup import _check_keep, _cpu_note, rank_values
from ._errors import FaissNNError, InvalidInputError
from ._faiss_io import FLAT_INDEX_METRICS, write_flat_index

if TYPE_CHECKING:
    from distilabel.typing import StepOutput

__all__ = ["FaissNearestNeighbour", "EmbeddingDedup", "ExactEmbeddingDedup"]

INPUT_COLUMN = "embedding"


class FaissNearestNeighbour(GlobalStep):
    """Every row's ``k`` nearest other rows by their ``embedding`` (faiss-nn).

    Attributes:
        device: the CUDA device ID or a list of IDs to be used. If negative integer, it will
            use all the available GPUs. Defaults to `None` (the CPU).
        string_factory: a faiss index factory string. `None` (or `"Flat"`) with the L2 or
            inner-product metric is exact search on faiss-nn's own kernels; any other string
            builds that faiss index. Defaults to `None`.
        metric_type: faiss's `METRIC_*` integer (0 inner product, 1 L2, 2 L1, 3 Linf,
            20 Canberra, 21 BrayCurtis, 22 JensenShannon), or `"cosine"`. Defaults to `None`
            (L2).
        k: the number of nearest neighbours to search for each input row. Defaults to `1`.
        search_batch_size: query rows per search call of a faiss index. Defaults to `50`.
        search_params: search-time parameters of a faiss index in faiss's syntax, e.g.
            `"nprobe=16"` (IVF) or `"efSearch=64"` (HNSW). Defaults to `None`.
        train_size: if the index needs a training step, how many vectors (evenly spaced over
            the dataset) train it. Defaults to `None` (up to 131,072).
        precision: the products' arithmetic: `"auto"` (the fastest exact path), `"f32"`,
            `"bf16"`, `"int8"`, `"tf32"` or `"f16"`; the lists are exact at every precision but a
            GPU's `"tf32"`. Defaults to `"auto"`.
        approximate: return the lists of reduced-precision products (bf16, f16, int8)
            re-scored but unproven (no row searched again; a list may miss a neighbour). f32
            lists stay exact. Defaults to `False`.
        threads: CPU worker threads. Defaults to `None` (every core).
        memory_budget: working memory of the search's tiles, in bytes. Defaults to `None`
            (512 MiB on the CPU).
        shards: fan the flat search out over this many Ray actors (`faiss_nn.ray`,
            needs `pip install 'faiss-nn[ray]'`; each actor searches with this step's
            `precision` and `approximate`): on the running Ray cluster (inside a
            `RayPipeline`), else on a local one. Defaults to `None` (in process).
        save_index: store the searched index as the `faiss_index` artifact (a faiss
            `IndexFlat` file, for flat L2 / inner-product search). Defaults to `True`.

    Input columns:
        - embedding (`List[Union[float, int]]`): a sentence embedding.

    Output columns:
        - nn_indices (`List[int]`): the indices of the `k` nearest other rows, best first.
        - nn_scores (`List[float]`): their scores: squared L2 distances (ascending), inner
          products or cosine similarities (descending).

    Categories:
        - embedding
    """

    device: Optional[RuntimeParameter[Union[int, List[int]]]] = Field(
        default=None,
        description="The CUDA device ID or a list of IDs to be used. If negative integer,"
        " it will use all the available GPUs.",
    )
    string_factory: Optional[RuntimeParameter[str]] = Field(
        default=None,
        description="A faiss index factory string; None or 'Flat' with L2 / inner product is"
        " exact search on faiss-nn's own kernels.",
    )
    metric_type: Optional[RuntimeParameter[Union[int, str]]] = Field(
        default=None,
        description="faiss's METRIC_* integer (0 inner product, 1 L2, 2 L1, 3 Linf, 20, 21,"
        " 22) or 'cosine'; None is L2.",
    )
    k: Optional[RuntimeParameter[int]] = Field(
        default=1,
        description="The number of nearest neighbours to search for each input row.",
    )
    search_batch_size: Optional[RuntimeParameter[int]] = Field(
        default=50,
        description="Query rows per search call of a faiss index.",
    )
    search_params: Optional[RuntimeParameter[str]] = Field(
        default=None,
        description="Search-time parameters of a faiss index in faiss's syntax, e.g."
        " 'nprobe=16' (IVF) or 'efSearch=64' (HNSW); an error with exact flat search.",
    )
    train_size: Optional[RuntimeParameter[int]] = Field(
        default=None,
        description="If the index needs a training step, how many vectors (evenly spaced)"
        " train it.",
    )
    precision: Optional[RuntimeParameter[str]] = Field(
        default="auto",
        description="Product arithmetic: auto (the fastest exact path), f32, bf16, int8, tf32 or f16;"
        " exact at every precision but a GPU's tf32.",
    )
    approximate: Optional[RuntimeParameter[bool]] = Field(
        default=False,
        description="Return reduced-precision (bf16, f16, int8) lists re-scored but unproven:"
        " faster, approximate. f32 lists stay exact.",
    )
    threads: Optional[RuntimeParameter[int]] = Field(
        default=None,
        description="CPU worker threads (None: every core).",
    )
    memory_budget: Optional[RuntimeParameter[int]] = Field(
        default=None,
        description="Working memory of the search's tiles in bytes (None: 512 MiB on the CPU).",
    )
    shards: Optional[RuntimeParameter[int]] = Field(
        default=None,
        description="Fan the exact search out over this many Ray actors (faiss_nn.ray): the"
        " running Ray cluster (as inside a RayPipeline), else a local one. None: in process.",
    )
    save_index: Optional[RuntimeParameter[bool]] = Field(
        default=True,
        description="Store the searched flat index as the 'faiss_index' artifact.",
    )

    # True once this step's `shards` search started a local Ray runtime (none was running):
    # `unload` shuts it down, so that no Ray process outlives the pipeline.
    _ray_started: bool = PrivateAttr(default=False)

    @property
    def inputs(self) -> List[str]:
        return [INPUT_COLUMN]

    def unload(self) -> None:
        """Shuts down the local Ray runtime a ``shards`` search started (a Ray runtime that was
        already running, as in a ``RayPipeline``, is left as it was)."""
        try:
            super().unload()
        finally:
            if self._ray_started:
                import ray

                ray.shutdown()
                self._ray_started = False

    @property
    def outputs(self) -> List[str]:
        return ["nn_indices", "nn_scores"]

    def process(self, inputs: StepInput) -> "StepOutput":  # type: ignore[override]
        x = embeddings_matrix(inputs)
        metric = METRIC_L2 if self.metric_type is None else self.metric_type
        # No thread pool outlives this call: the search's worker threads are scoped to it, so
        # the step is safe in forked pipeline workers.
        indices, scores = self._search(x, metric)
        if self.save_index:
            self._save_index(x, metric)
        out = [
            {**row, "nn_indices": ind, "nn_scores": sc}
            for row, ind, sc in zip(inputs, indices.tolist(), scores.tolist())
        ]
        yield out

    def _search(self, x: np.ndarray, metric: Any) -> Tuple[np.ndarray, np.ndarray]:
        """``(indices, scores)``, ``n × k``; with faiss's values in slots no row fills."""
        n, k = x.shape[0], self.k
        # distilabel's step asks faiss for more rows than the others when k is that large, and
        # gets the rest as empty slots: search the rows there are (a bad k is the search's to
        # refuse).
        wanted = k if isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k > 0 else None
        found = min(wanted, n - 1) if wanted is not None else k
        if wanted is not None and found == 0:
            # One row, no other row to list: the search still checks the row and every
            # parameter (the row finds itself, and is dropped).
            self._in_process(x, metric, 1, exclude_self=False)
            indices, scores = np.empty((n, 0), np.int64), np.empty((n, 0), np.float32)
        elif self.shards is not None:
            indices, scores = self._fan_out(x, metric, found)
        else:
            indices, scores = self._in_process(x, metric, found)
        if wanted is not None and found < wanted:
            pad = ((0, 0), (0, wanted - found))
            indices = np.pad(indices, pad, constant_values=-1)
            scores = np.pad(scores, pad, constant_values=np.float32(np.nan))
        empty = indices < 0
        if empty.any():
            similarity = _flat_code(metric) == METRIC_INNER_PRODUCT
            scores = np.where(empty, np.float32(-_FLT_MAX if similarity else _FLT_MAX), scores)
        return indices, scores

    def _fan_out(self, x: Any, metric: Any, k: Any) -> Any:
        if self.search_params:
            raise InvalidInputError(
                f"shards={self.shards} runs exact flat search, which has no search_params (got {self.search_params!r})"
            )
        if (self.string_factory or "Flat").strip() != "Flat":
            raise InvalidInputError(
                f"shards={self.shards} runs exact flat search only, not string_factory={self.string_factory!r}"
            )
        from . import ray as fray  # first: says how to install Ray where it is missing

        import ray

        if not ray.is_initialized():
            self._ray_started = True  # faiss_nn.ray starts a local runtime
        device = self.device
        return fray.self_knn(
            x,
            k=k,
            metric=metric,
            shards=self.shards,
            threads_per_shard=self.threads or 1,
            num_gpus_per_shard=1 if device is not None else 0,
            device=0 if device is not None else None,
            collect=True,
            precision=self.precision if self.precision is not None else "auto",
            approximate=self.approximate if self.approximate is not None else False,
        )

    def _in_process(self, x: Any, metric: Any, k: Any, exclude_self: bool = True) -> Any:
        # None or ≤ 0: one batch of every row, as distilabel's step takes it (datasets.map
        # reads a batch size of None or ≤ 0 as the whole dataset).
        size = self.search_batch_size
        batch = size if size is not None and size > 0 else max(x.shape[0], 1)
        return _self_knn(
            x,
            f"column {INPUT_COLUMN!r}",
            k,
            metric,
            self.device,
            self.string_factory,
            batch,
            self.precision if self.precision is not None else "auto",
            exclude_self,
            self.threads,
            self.memory_budget,
            self.train_size,
            "sharded",
            self.search_params,
            self.approximate if self.approximate is not None else False,
        )

    def _save_index(self, x: Any, metric: Any) -> None:
        """The `faiss_index` artifact, as distilabel's step stores it (a flat index, of any
        metric; none for other factory strings)."""
        factory = (self.string_factory or "Flat").strip()
        code = _flat_code(metric)
        if code is None and isinstance(metric, int) and metric in FLAT_INDEX_METRICS:
            code = metric
        if _is_cosine(metric):
            # faiss's own cosine: an IndexFlatIP of the unit-length rows.
            x = x / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True).astype(np.float32)
        if factory != "Flat" or code is None:
            self._logger.info(
                f"faiss_index artifact not stored: only a flat index is written"
                f" (string_factory={self.string_factory!r}, metric_type={metric!r})"
            )
            return
        self.save_artifact(
            name="faiss_index",
            write_function=lambda path: write_flat_index(path / "index.faiss", x, int(code)),
            metadata={"num_rows": int(x.shape[0]), "embedding_dim": int(x.shape[1])},
        )


# float32's largest value: faiss's score of an empty slot (negated for inner products).
_FLT_MAX = float(np.finfo(np.float32).max)


def _is_cosine(metric: Any) -> bool:
    try:
        return FlatIndex(1, metric).metric == "cosine"
    except FaissNNError:
        return False


def _flat_code(metric: Any) -> Optional[int]:
    """faiss's integer of a flat L2 / inner-product metric however it is spelled (the native
    parser decides), or None for any other metric."""
    try:
        return int(FlatIndex(1, metric).metric_type)
    except FaissNNError:
        return None


def embeddings_matrix(rows: List[Dict[str, Any]], column: str = INPUT_COLUMN) -> Any:
    """The rows' ``column`` values packed into one C-contiguous float32 ``n × d`` matrix
    (in native code: no per-element Python loop). Refuses, naming the row: a row without the
    column, a ragged or non-numeric embedding."""
    try:
        vectors = [row[column] for row in rows]
    except (KeyError, TypeError):
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise InvalidInputError(
                    f"row {i} is {type(row).__name__}, expected a dict of columns"
                ) from None
            if column not in row:
                names = ", ".join(repr(c) for c in row) or "none"
                raise InvalidInputError(
                    f"row {i}: no column {column!r}; its columns are: {names}"
                ) from None
        raise
    return as_matrix(vectors, f"column {column!r}")


class EmbeddingDedup(GlobalStep):
    """Marks near-duplicates from ``nn_indices`` / ``nn_scores``, keeping one row of each group.

    A drop-in for distilabel's ``EmbeddingDedup`` (same ``threshold``, same inputs, same
    ``keep_row_after_embedding_filtering`` output), with two differences:

    - every row whose neighbour passes the threshold is joined to it in one group (transitively),
      and each group keeps exactly one row (the first by default); distilabel's marks every
      listed neighbour that passes, so in a duplicate pair each row marks the other and both
      are dropped;
    - the threshold is compared in the metric's direction: a score above it for similarities
      (inner product, cosine), below it for L2 distances (distilabel compares with ``>``
      whatever the metric). The metric is ``metric_type``; when unset it is read from the order
      of the scores (ascending: distances, descending: similarities), and where the order cannot
      tell (k = 1) the step asks for ``metric_type`` rather than guess.

    ``mode="distilabel"`` reproduces distilabel's rule exactly, for comparison. Groups found from
    lists of k neighbours can miss an edge where a group has more than k + 1 rows; the exact
    threshold join (:class:`ExactEmbeddingDedup`) never does.

    Attributes:
        threshold: the score a neighbour must pass to be a duplicate. Defaults to `0.9`.
        metric_type: the metric of `nn_scores`: faiss's `METRIC_*` integer (0 inner product,
            1 L2) or `"cosine"`; `None` reads it from the scores' order (an error where each row
            lists one neighbour). Defaults to `None`.
        keep: which row a group keeps: `"first"` (the lowest row), `"max"` or `"min"` (by the
            column `keep_by`). Defaults to `"first"`.
        keep_by: the column `keep="max"` / `"min"` ranks by (numbers, dates, or texts by
            length). Defaults to `None`.
        mode: `"groups"` (one row kept per group) or `"distilabel"` (distilabel's own rule).
            Defaults to `"groups"`.

    Input columns:
        - nn_indices (`List[int]`): the row's nearest neighbours (row positions).
        - nn_scores (`List[float]`): their scores.

    Output columns:
        - keep_row_after_embedding_filtering (`bool`): whether the row is kept.

    Categories:
        - filtering
    """

    threshold: Optional[RuntimeParameter[float]] = Field(
        default=0.9,
        description="The score a neighbour must pass to be a duplicate (above it for similarities,"
        " below it for L2 distances).",
    )
    metric_type: Optional[RuntimeParameter[Union[int, str]]] = Field(
        default=None,
        description="The metric of nn_scores (0 inner product, 1 L2, 'cosine'); None reads it"
        " from the scores' order.",
    )
    keep: Optional[RuntimeParameter[str]] = Field(
        default="first",
        description="Which row a group keeps: 'first', 'max' or 'min' (by keep_by).",
    )
    keep_by: Optional[RuntimeParameter[str]] = Field(
        default=None,
        description="The column keep='max' / 'min' ranks rows by (texts by length).",
    )
    mode: Optional[RuntimeParameter[str]] = Field(
        default="groups",
        description="'groups' (one row kept per group) or 'distilabel' (distilabel's own rule).",
    )

    @property
    def inputs(self) -> List[str]:
        return ["nn_scores", "nn_indices"]

    @property
    def outputs(self) -> List[str]:
        return ["keep_row_after_embedding_filtering"]

    def process(self, inputs: StepInput) -> "StepOutput":  # type: ignore[override]
        n = len(inputs)
        t = self.threshold
        if isinstance(t, bool) or not isinstance(t, (int, float, np.integer, np.floating)) or not np.isfinite(t):
            raise InvalidInputError(f"invalid threshold: {t!r}: a threshold must be a finite number")
        i, j, scores = _neighbour_edges(inputs)
        if self.mode == "distilabel":
            keep = _distilabel_rule(inputs, self.threshold)
        elif self.mode in (None, "groups"):
            similarity = _direction(inputs, self.metric_type)
            passes = scores > self.threshold if similarity else scores < self.threshold
            policy = _check_keep(self.keep or "first", self.keep_by)
            by = _column_rank(inputs, self.keep_by, n) if policy != "first" else None
            _, keep = _native._groups_from_pairs(n, i[passes], j[passes], policy, by)
        else:
            raise InvalidInputError(f"invalid mode: {self.mode!r}: expected 'groups' or 'distilabel'")
        yield [{**row, "keep_row_after_embedding_filtering": bool(k)} for row, k in zip(inputs, keep)]


class ExactEmbeddingDedup(GlobalStep):
    """Near-duplicates straight from ``embedding``: the exact threshold self-join.

    Every pair of rows whose score passes ``threshold`` (a cosine similarity above it by default;
    an inner product above it, or a squared L2 distance below it) joins them into one group,
    transitively; each group keeps exactly one row. No k to choose: every pair is found (each
    computed once, decided on its float64 score), however large a group.

    Attributes:
        threshold: the score a pair must pass. Defaults to `0.9`.
        metric: `"cosine"`, `"ip"` or `"l2"`. Defaults to `"cosine"`.
        keep: `"first"` (the lowest row), `"max"` or `"min"` (by the column `keep_by`).
            Defaults to `"first"`.
        keep_by: the column `keep="max"` / `"min"` ranks by (numbers, dates, texts by length).
        max_pairs: stop with an error once more pairs pass (default: what the memory budget
            holds). Defaults to `None`.
        threads: CPU worker threads. Defaults to `None` (every core).
        memory_budget: working memory in bytes. Defaults to `None` (512 MiB).
        device: the join runs on the CPU; a GPU device is noted in the log. Defaults to `None`.
        shards: run the join over this many Ray actors (`faiss_nn.ray`). Defaults to `None`.

    Input columns:
        - embedding (`List[Union[float, int]]`): a sentence embedding.

    Output columns:
        - dup_group (`int`): the row its duplicate group keeps (its own row for a kept row).
        - keep_row_after_embedding_filtering (`bool`): whether the row is kept.

    Categories:
        - filtering
        - embedding
    """

    threshold: Optional[RuntimeParameter[float]] = Field(default=0.9, description="The score a pair must pass.")
    metric: Optional[RuntimeParameter[str]] = Field(default="cosine", description="'cosine', 'ip' or 'l2'.")
    keep: Optional[RuntimeParameter[str]] = Field(
        default="first", description="Which row a group keeps: 'first', 'max' or 'min' (by keep_by)."
    )
    keep_by: Optional[RuntimeParameter[str]] = Field(
        default=None, description="The column keep='max' / 'min' ranks rows by (texts by length)."
    )
    max_pairs: Optional[RuntimeParameter[int]] = Field(
        default=None, description="Stop with an error once more pairs than this pass."
    )
    threads: Optional[RuntimeParameter[int]] = Field(default=None, description="CPU worker threads.")
    memory_budget: Optional[RuntimeParameter[int]] = Field(default=None, description="Working memory in bytes.")
    device: Optional[RuntimeParameter[Union[int, List[int], str]]] = Field(
        default=None, description="The join runs on the CPU; a GPU device is noted."
    )
    shards: Optional[RuntimeParameter[int]] = Field(
        default=None, description="Run the join over this many Ray actors (faiss_nn.ray)."
    )

    @property
    def inputs(self) -> List[str]:
        return [INPUT_COLUMN]

    @property
    def outputs(self) -> List[str]:
        return ["dup_group", "keep_row_after_embedding_filtering"]

    def process(self, inputs: StepInput) -> "StepOutput":  # type: ignore[override]
        if not inputs:
            yield []
            return
        x = embeddings_matrix(inputs)
        n = x.shape[0]
        policy = _check_keep(self.keep or "first", self.keep_by)
        if self.device is not None:
            self._logger.info(f"the threshold join runs on the CPU; device={self.device!r} is not used")
        metric = self.metric if self.metric is not None else "cosine"
        if self.shards is not None:
            from . import ray as fray

            by = [row.get(self.keep_by) for row in inputs] if policy != "first" else None
            group, keep = fray.dedup(
                x, self.threshold, metric=metric, keep=policy, by=by, shards=self.shards,
                threads_per_shard=self.threads or 1, max_pairs=self.max_pairs,
            )
        else:
            by = _column_rank(inputs, self.keep_by, n) if policy != "first" else None
            try:
                group, keep = _native.dedup(
                    x, self.threshold, metric, policy, by, self.max_pairs, self.threads, self.memory_budget
                )
            except InvalidInputError as e:
                msg = str(e)
                if msg.startswith("embeddings:"):
                    raise InvalidInputError(f"column {INPUT_COLUMN!r}" + msg[len("embeddings"):]) from None
                raise
        yield [
            {**row, "dup_group": int(g), "keep_row_after_embedding_filtering": bool(k)}
            for row, g, k in zip(inputs, group.tolist(), keep.tolist())
        ]


def _neighbour_edges(rows: List[Dict[str, Any]]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(i, j, score)``: every listed neighbour of every row (unfilled slots, index -1,
    skipped), checked: lists of one length per row, indices rows of the input."""
    n = len(rows)
    i_parts, j_parts, s_parts = [], [], []
    for r, row in enumerate(rows):
        try:
            idx, sc = row["nn_indices"], row["nn_scores"]
        except (KeyError, TypeError):
            raise InvalidInputError(f"row {r}: needs the columns 'nn_indices' and 'nn_scores' (from FaissNearestNeighbour)") from None
        idx = np.asarray(idx if idx is not None else [], dtype=np.int64)
        sc = np.asarray(sc if sc is not None else [], dtype=np.float64)
        if idx.ndim != 1 or idx.shape != sc.shape:
            raise InvalidInputError(f"row {r}: nn_indices has {idx.size} entries and nn_scores {sc.size}; they must pair up")
        filled = idx >= 0
        bad = filled & (idx >= n) | (idx < -1)
        if bad.any():
            raise InvalidInputError(f"row {r}: nn_indices holds {int(idx[bad][0])}, but the rows are numbered 0 to {n - 1}")
        i_parts.append(np.full(int(filled.sum()), r, np.int64))
        j_parts.append(idx[filled])
        s_parts.append(sc[filled])
    cat = lambda parts, t: np.concatenate(parts).astype(t) if parts else np.empty(0, t)  # noqa: E731
    return cat(i_parts, np.int64), cat(j_parts, np.int64), cat(s_parts, np.float64)


def _direction(rows: List[Dict[str, Any]], metric_type: Any) -> bool:
    """True where larger scores are closer: from ``metric_type``, else from the scores' order."""
    if metric_type is not None:
        code = _flat_code(metric_type)
        if code is None:
            raise InvalidInputError(
                f"invalid metric_type: {metric_type!r}: the dedup reads scores of 0 (inner product), 1 (L2) or 'cosine'"
            )
        return code == METRIC_INNER_PRODUCT
    up = down = None
    for r, row in enumerate(rows):
        pairs = zip(row.get("nn_scores") or [], row.get("nn_indices") or [])
        sc = [s for s, j in pairs if j is not None and j >= 0]
        diffs = np.diff(np.asarray(sc, np.float64))
        if (diffs > 0).any():
            up = up if up is not None else r
        if (diffs < 0).any():
            down = down if down is not None else r
    if up is not None and down is not None:
        raise InvalidInputError(
            f"nn_scores ascend in row {up} and descend in row {down}; set metric_type to say what they are"
        )
    if up is None and down is None:
        # One neighbour a row (FaissNearestNeighbour's default k = 1), or only equal scores: the
        # lists cannot say. Guessing would compare L2 distances backwards (the original step's
        # default metric), so the caller says.
        raise InvalidInputError(
            "nn_scores do not show whether they are distances or similarities (no row lists two different "
            "scores, as with k = 1); set metric_type: 1 for L2 distances (FaissNearestNeighbour's default), "
            "0 or 'cosine' for similarities"
        )
    return up is None


def _distilabel_rule(rows: List[Dict[str, Any]], threshold: Any) -> np.ndarray:
    """distilabel's ``EmbeddingDedup``, literally: every listed neighbour scoring above the
    threshold is dropped, whatever the metric, and an index of -1 (an unfilled slot) drops the
    last row, as Python's indexing of the rows does there."""
    keep = np.ones(len(rows), bool)
    for row in rows:
        above = np.asarray(row["nn_scores"]) > threshold
        keep[np.asarray(row["nn_indices"], dtype=np.int64)[above]] = False
    return keep


def _column_rank(rows: List[Dict[str, Any]], column: Optional[str], n: int) -> Any:
    """The ranking values of ``column`` (see :func:`faiss_nn.rank_values`), naming a missing one."""
    if column is None:
        return None
    if n and column not in rows[0]:
        names = ", ".join(repr(c) for c in rows[0]) or "none"
        raise InvalidInputError(f"invalid keep_by: no column {column!r}; the columns are: {names}")
    return rank_values([row.get(column) for row in rows], n, f"column {column!r}")
