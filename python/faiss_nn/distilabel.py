"""A drop-in replacement for distilabel's ``FaissNearestNeighbour`` global step.

Swap the import and nothing else::

    # from distilabel.steps import FaissNearestNeighbour
    from faiss_nn.distilabel import FaissNearestNeighbour

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
from ._errors import FaissNNError, InvalidInputError
from ._faiss_io import FLAT_INDEX_METRICS, write_flat_index

if TYPE_CHECKING:
    from distilabel.typing import StepOutput

__all__ = ["FaissNearestNeighbour"]

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
            20 Canberra, 21 BrayCurtis, 22 JensenShannon). Defaults to `None` (L2).
        k: the number of nearest neighbours to search for each input row. Defaults to `1`.
        search_batch_size: query rows per search call of a faiss index. Defaults to `50`.
        search_params: search-time parameters of a faiss index in faiss's syntax, e.g.
            `"nprobe=16"` (IVF) or `"efSearch=64"` (HNSW). Defaults to `None`.
        train_size: if the index needs a training step, how many vectors (evenly spaced over
            the dataset) train it. Defaults to `None` (up to 131,072).
        precision: GPU product arithmetic: `"f32"` (exact), `"tf32"`, `"f16"` or `"bf16"`.
            Defaults to `"f32"`.
        threads: CPU worker threads. Defaults to `None` (every core).
        memory_budget: working memory of the search's tiles, in bytes. Defaults to `None`
            (512 MiB on the CPU).
        shards: fan the exact flat search out over this many Ray actors (`faiss_nn.ray`,
            needs `pip install 'faiss-nn[ray]'`): on the running Ray cluster (inside a
            `RayPipeline`), else on a local one. Defaults to `None` (in process).
        save_index: store the searched index as the `faiss_index` artifact (a faiss
            `IndexFlat` file, for flat L2 / inner-product search). Defaults to `True`.

    Input columns:
        - embedding (`List[Union[float, int]]`): a sentence embedding.

    Output columns:
        - nn_indices (`List[int]`): the indices of the `k` nearest other rows, best first.
        - nn_scores (`List[float]`): their scores: squared L2 distances (ascending) or
          inner products (descending).

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
    metric_type: Optional[RuntimeParameter[int]] = Field(
        default=None,
        description="faiss's METRIC_* integer (0 inner product, 1 L2, 2 L1, 3 Linf, 20, 21,"
        " 22); None is L2.",
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
        default="f32",
        description="GPU product arithmetic: f32 (exact), tf32, f16 or bf16.",
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
            self.precision if self.precision is not None else "f32",
            exclude_self,
            self.threads,
            self.memory_budget,
            self.train_size,
            "sharded",
            self.search_params,
        )

    def _save_index(self, x: Any, metric: Any) -> None:
        """The `faiss_index` artifact, as distilabel's step stores it (a flat index, of any
        metric; none for other factory strings)."""
        factory = (self.string_factory or "Flat").strip()
        code = _flat_code(metric)
        if code is None and isinstance(metric, int) and metric in FLAT_INDEX_METRICS:
            code = metric
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
