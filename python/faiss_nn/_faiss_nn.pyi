"""Type stubs of the native module. Call the wrappers in ``faiss_nn`` instead: they convert any
array-like input to the C-contiguous float32 matrices these functions require."""

from typing import Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str
DEFAULT_MAX_PAIRS: int

_Device = Union[None, int, str, Sequence[int]]
_Metric = Union[int, str]

def self_knn(
    embeddings: npt.NDArray[np.float32],
    k: int,
    metric: _Metric,
    device: _Device,
    string_factory: Optional[str],
    search_batch_size: int,
    precision: str,
    exclude_self: bool,
    threads: Optional[int],
    memory_budget: Optional[int],
    train_size: Optional[int],
    shard_mode: str,
    search_params: Optional[str] = None,
    approximate: bool = False,
) -> Tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...
def _pack_rows(rows: Sequence[object], what: str) -> npt.NDArray[np.float32]: ...
def _last_input_address() -> int: ...
def _raise_kind(kind: str, message: str) -> None: ...
def _panic_inside() -> None: ...

_Lists = Tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]

# Block primitives of faiss_nn.ray: (ids, keys) lists, keys smaller-is-better (L2 distances or
# negated inner products), global row numbers.
def _block_self_join(
    x: npt.NDArray[np.float32],
    id0: int,
    k: int,
    metric: _Metric,
    device: _Device = None,
    threads: Optional[int] = None,
    precision: Optional[str] = None,
    approximate: bool = False,
) -> _Lists: ...
def _block_pair_join(
    a: npt.NDArray[np.float32],
    a0: int,
    b: npt.NDArray[np.float32],
    b0: int,
    k: int,
    metric: _Metric,
    device: _Device = None,
    threads: Optional[int] = None,
    precision: Optional[str] = None,
    approximate: bool = False,
) -> Tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...
def _block_search(
    q: npt.NDArray[np.float32],
    q0: int,
    x: npt.NDArray[np.float32],
    x0: int,
    k: int,
    metric: _Metric,
    device: _Device = None,
    threads: Optional[int] = None,
    precision: Optional[str] = None,
    approximate: bool = False,
) -> _Lists: ...
def _check_precision(precision: str) -> None: ...
def _merge_lists(parts: Sequence[_Lists], k: int) -> _Lists: ...

_Pairs = Tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float32]]
_Groups = Tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]
# Ranking values of keep="max" / "min": (kind "int" | "uint" | "float", values, valid).
_By = Optional[Tuple[str, npt.NDArray[np.generic], npt.NDArray[np.bool_]]]

def _block_range_self(
    x: npt.NDArray[np.float32],
    id0: int,
    threshold: float,
    metric: _Metric,
    max_pairs: Optional[int] = None,
    threads: Optional[int] = None,
) -> _Pairs: ...
def _block_range_pair(
    a: npt.NDArray[np.float32],
    a0: int,
    b: npt.NDArray[np.float32],
    b0: int,
    threshold: float,
    metric: _Metric,
    max_pairs: Optional[int] = None,
    threads: Optional[int] = None,
) -> _Pairs: ...

# The threshold join and duplicate groups.
def range_pairs(
    x: npt.NDArray[np.float32],
    threshold: float,
    metric: _Metric,
    max_pairs: Optional[int] = None,
    threads: Optional[int] = None,
    memory_budget: Optional[int] = None,
) -> _Pairs: ...
def dedup(
    x: npt.NDArray[np.float32],
    threshold: float,
    metric: _Metric,
    keep: str,
    by: _By = None,
    max_pairs: Optional[int] = None,
    threads: Optional[int] = None,
    memory_budget: Optional[int] = None,
) -> _Groups: ...
def _check_threshold(threshold: float, metric: _Metric) -> None: ...
def _groups_from_pairs(
    n: int, i: npt.NDArray[np.int64], j: npt.NDArray[np.int64], keep: str, by: _By = None
) -> _Groups: ...

class FlatIndex:
    def __init__(
        self,
        d: int,
        metric: _Metric,
        device: _Device,
        threads: Optional[int],
        memory_budget: Optional[int],
        precision: str,
        approximate: bool = False,
    ) -> None: ...
    def add(self, x: npt.NDArray[np.float32]) -> None: ...
    def search(
        self, x: npt.NDArray[np.float32], k: int
    ) -> Tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]: ...
    def range_search(
        self, x: npt.NDArray[np.float32], radius: float
    ) -> Tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.int64]]: ...
    def reset(self) -> None: ...
    @property
    def ntotal(self) -> int: ...
    @property
    def d(self) -> int: ...
    @property
    def metric_type(self) -> int: ...
    @property
    def metric(self) -> str: ...
    @property
    def device(self) -> str: ...
    @property
    def loads(self) -> int: ...
