"""Type stubs of the native module. Call the wrappers in ``faiss_nn`` instead: they convert any
array-like input to the C-contiguous float32 matrices these functions require."""

from typing import Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

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
) -> Tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...
def _pack_rows(rows: Sequence[object], what: str) -> npt.NDArray[np.float32]: ...
def _last_input_address() -> int: ...
def _raise_kind(kind: str, message: str) -> None: ...
def _panic_inside() -> None: ...

_Lists = Tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]

# Block primitives of faiss_nn.ray: (ids, keys) lists, keys smaller-is-better (L2 distances or
# negated inner products), global row numbers.
def _block_self_join(
    x: npt.NDArray[np.float32], id0: int, k: int, metric: _Metric, device: _Device = None, threads: Optional[int] = None
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
) -> _Lists: ...
def _merge_lists(parts: Sequence[_Lists], k: int) -> _Lists: ...

class FlatIndex:
    def __init__(
        self,
        d: int,
        metric: _Metric,
        device: _Device,
        threads: Optional[int],
        memory_budget: Optional[int],
        precision: str,
    ) -> None: ...
    def add(self, x: npt.NDArray[np.float32]) -> None: ...
    def search(
        self, x: npt.NDArray[np.float32], k: int
    ) -> Tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]: ...
    def reset(self) -> None: ...
    @property
    def ntotal(self) -> int: ...
    @property
    def d(self) -> int: ...
    @property
    def metric_type(self) -> int: ...
    @property
    def device(self) -> str: ...
    @property
    def loads(self) -> int: ...
