"""Bad input through every API: the documented exception, a message naming what and where, and
nothing half-written."""

from __future__ import annotations

import ctypes.util

import numpy as np
import pyarrow as pa
import pytest

import faiss_nn
from faiss_nn import (
    BackendError,
    DeviceError,
    FaissNNError,
    InternalError,
    InvalidInputError,
    IoError,
    OutOfMemoryError,
    UnsupportedError,
)


def rand(n, d, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


HAS_CUDA_DRIVER = ctypes.util.find_library("cuda") is not None


# --- the classes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind,cls,builtin",
    [
        ("BadInput", InvalidInputError, ValueError),
        ("Unsupported", UnsupportedError, FaissNNError),
        ("Device", DeviceError, RuntimeError),
        ("OutOfMemory", OutOfMemoryError, MemoryError),
        ("Backend", BackendError, RuntimeError),
        ("Io", IoError, OSError),
        ("Internal", InternalError, RuntimeError),
    ],
)
def test_each_error_kind_raises_its_class_with_the_message(kind, cls, builtin):
    with pytest.raises(cls) as e:
        faiss_nn._faiss_nn._raise_kind(kind, f"the {kind} message")
    assert type(e.value) is cls
    assert isinstance(e.value, FaissNNError) and isinstance(e.value, builtin)
    assert str(e.value) == f"the {kind} message"


def test_a_panic_in_the_library_is_an_internal_error_not_a_panic_exception():
    with pytest.raises(InternalError, match="deliberate panic for the test") as e:
        faiss_nn._faiss_nn._panic_inside()
    assert "please report it" in str(e.value)
    assert type(e.value).__name__ != "PanicException"


# --- self_knn -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data,match",
    [
        ([[1.0, 2.0], [3.0, 4.0], [5.0]], r"ragged rows in embeddings: row 2 has 1 values, expected 2"),
        ([[1.0, 2.0], [3.0, 4.0, 5.0]], r"row 1 has 3 values, expected 2"),
        ([[1.0, 2.0], [3.0, "x"]], r"row 1, component 1 is 'x' \(str\), expected a number"),
        ([[1.0, 2.0], ["3", 4.0]], r"row 1, component 0 is '3' \(str\), expected a number"),
        ([[1.0, None], [3.0, 4.0]], r"row 0, component 1 is None \(NoneType\), expected a number"),
        ([[1.0, 2.0], [3.0, [4.0]]], r"row 1, component 1 is \[4.0\] \(list\), expected a number"),
        ([[1.0, 2.0], 3.0], r"row 1 is 3.0 \(float\), expected a sequence of numbers"),
        ([[1.0, 2.0], "ab"], r"row 1 is 'ab' \(str\), expected a sequence of numbers"),
        ([[1.0, 2.0], None], r"row 1 is None"),
        ([], r"embeddings is empty: no rows"),
        ([[], []], r"embeddings is empty: row 0 has no values"),
        ([[1.0, 2.0], [1e300, 0.0]], r"row 1, component 0 is 1e300, which is too large for float32"),
        (np.array([["a", "b"], ["c", "d"]]), r"expected an array of numbers, got dtype <U1 \(strings\)"),
        (np.array([[True, False], [False, True]]), r"dtype bool \(booleans\)"),
        (np.ones((3, 2), dtype=np.complex64), r"dtype complex64 \(complex numbers\)"),
        (np.array([[object(), 1]], dtype=object), r"2-D array of Python objects"),
        (np.ones((2, 3, 4), dtype=np.float32), r"expected a 2-D array \(rows × dimensions\), got 3-D shape \(2, 3, 4\)"),
        (np.ones(5, dtype=np.float32), r"got 1-D shape \(5,\); for a single row use x\[None, :\]"),
        (np.zeros((0, 4), dtype=np.float32), r"embeddings is empty: no rows"),
        (np.zeros((3, 0), dtype=np.float32), r"embeddings is empty"),
        (np.array([[1, 2], [3, 1e300]]), r"row 1, component 1 is 1e\+300, which is too large for float32"),
        ({"a": 1}, r"expected a 2-D array or a sequence of rows, got dict"),
        (42, r"expected a 2-D array or a sequence of rows, got int"),
    ],
)
def test_bad_embeddings(data, match):
    with pytest.raises(InvalidInputError, match=match):
        faiss_nn.self_knn(data, k=1)


def test_float64_overflow_raises_without_a_numpy_warning():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "overflow encountered in cast" would fail here
        with pytest.raises(InvalidInputError, match=r"too large for float32"):
            faiss_nn.self_knn(np.array([[1.0, 2.0], [3.0, 1e300]]), k=1)


@pytest.mark.parametrize("value,name", [(np.nan, "NaN"), (np.inf, "inf"), (-np.inf, "-inf")])
def test_non_finite_values_are_named_by_row_and_component(value, name):
    x = rand(10, 4)
    x[7, 2] = value
    with pytest.raises(InvalidInputError, match=rf"embeddings: row 7, component 2 is {name}; only finite values"):
        faiss_nn.self_knn(x, k=2)
    with pytest.raises(InvalidInputError, match=r"row 7, component 2"):
        faiss_nn.self_knn(x.tolist(), k=2)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"k": 0}, r"k = 0 is invalid: at least one neighbour"),
        ({"k": -2}, r"k = -2 is invalid"),
        ({"k": 5}, r"k = 5 is invalid: each of the 5 rows has only 4 other rows"),
        ({"k": 6, "exclude_self": False}, r"k = 6 is invalid: the dataset has only 5 rows"),
        ({"k": 1.5}, r"invalid k: 1.5: expected an integer, got float"),
        ({"k": True}, r"invalid k: True: expected an integer, not a bool"),
        ({"k": 2**70}, r"invalid k: 1180591620717411303424: out of the 64-bit integer range"),
        ({"k": None}, r"invalid k: None"),
        ({"metric": 4}, r"metric_type 4: METRIC_Lp needs a metric_arg"),
        ({"metric": 7}, r"metric_type 7: not a faiss metric; this step takes 0 \(INNER_PRODUCT\), 1 \(L2\)"),
        ({"metric": 24}, r"metric_type 24: METRIC_NaNEuclidean is not served"),
        ({"metric": "manhattan"}, r"invalid metric: \"manhattan\": expected l2, ip, cosine, l1, linf, canberra, braycurtis, jensenshannon or a faiss METRIC_\* integer"),
        ({"metric": 1.0}, r"invalid metric: 1.0"),
        ({"device": [0, -1]}, r"invalid device: item 1 is -1; a negative id \(every GPU\) cannot appear in a list"),
        ({"device": []}, r"invalid device: an empty list"),
        ({"device": "gpu"}, r"invalid device: \"gpu\": not a number"),
        ({"device": 1.5}, r"invalid device: 1.5: expected None \(CPU\), a CUDA device id"),
        ({"device": True}, r"invalid device: True: .* not a bool"),
        ({"device": ["a"]}, r"invalid device \(item 0\): 'a': expected an integer"),
        ({"search_batch_size": 0}, r"invalid search_batch_size: 0: a batch needs at least one row"),
        ({"threads": 0}, r"invalid threads: 0: at least one worker thread"),
        ({"memory_budget": -1}, r"invalid memory_budget: -1"),
        ({"train_size": 0}, r"invalid train_size: 0"),
        ({"precision": "f64"}, r"invalid precision: \"f64\": expected auto, f32, tf32, f16, bf16 or int8"),
        ({"precision": 32}, r"invalid precision: 32"),
        ({"shard_mode": "mirrored"}, r"invalid shard_mode: \"mirrored\""),
        ({"exclude_self": "yes"}, r"invalid exclude_self: 'yes'"),
        ({"string_factory": 5}, r"invalid string_factory: 5"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        faiss_nn.self_knn(rand(5, 3), **{"k": 1, **kwargs})


def test_a_factory_string_faiss_refuses_names_it():
    with pytest.raises(FaissNNError, match=r"NotAnIndex"):
        faiss_nn.self_knn(rand(50, 8), k=1, string_factory="NotAnIndex")


def test_rows_too_large_for_faiss_are_refused_before_faiss_sees_them():
    # faiss crashed (IVF: a bus error), looped (PQ) or returned empty lists (HNSW) on these.
    for factory in ("IVF4,Flat", "PQ2", "HNSW8"):
        with pytest.raises(faiss_nn.InvalidInputError, match="row 0: its squared norm"):
            faiss_nn.self_knn(rand(300, 8) * np.float32(1e30), k=3, string_factory=factory)
        with pytest.raises(faiss_nn.InvalidInputError, match="squared norms sum to"):
            faiss_nn.self_knn(rand(300, 8) * np.float32(1e18), k=3, string_factory=factory)
    # SQfp16 stores float16: 1e5 would become inf and be reported as a value the data never held.
    x = rand(300, 8)
    x[5, 2] = 1e5
    with pytest.raises(faiss_nn.InvalidInputError, match=r"row 5, component 2 is 1e5.*65504"):
        faiss_nn.self_knn(x, k=3, string_factory="SQfp16")


def test_too_few_rows_to_train_is_an_error_not_a_crash():
    with pytest.raises(FaissNNError):
        faiss_nn.self_knn(rand(20, 8), k=1, string_factory="IVF256,Flat")


@pytest.mark.skipif(HAS_CUDA_DRIVER, reason="this machine has a CUDA driver: a GPU can be asked for")
@pytest.mark.parametrize("device", [0, [0, 0], -1, "0,1"])
def test_a_gpu_without_a_cuda_driver_is_unsupported(device):
    with pytest.raises(UnsupportedError, match=r"not available"):
        faiss_nn.self_knn(rand(10, 4), k=1, device=device)
    index = faiss_nn.FlatIndex(4, device=device)
    index.add(rand(5, 4))
    with pytest.raises(UnsupportedError, match=r"not available"):
        index.search(rand(2, 4), 1)
    assert index.ntotal == 5


def test_the_cpu_runs_whatever_the_build():
    i, _ = faiss_nn.self_knn(rand(10, 4), k=1, device=None)
    j, _ = faiss_nn.self_knn(rand(10, 4), k=1, device="cpu")
    assert np.array_equal(i, j)


# --- FlatIndex ----------------------------------------------------------------------------


def test_flat_index_bad_input_leaves_it_unchanged():
    index = faiss_nn.FlatIndex(4)
    index.add(rand(10, 4))
    bad = rand(5, 4)
    bad[3, 1] = np.nan
    with pytest.raises(InvalidInputError, match=r"added vectors: row 3, component 1 is NaN"):
        index.add(bad)
    with pytest.raises(InvalidInputError, match=r"ragged rows in added vectors: row 1 has 3 values, expected 4"):
        index.add([[1, 2, 3, 4], [1, 2, 3]])
    with pytest.raises(InvalidInputError, match=r"added vectors have dimension 3, the index has d = 4"):
        index.add(rand(2, 3))
    with pytest.raises(InvalidInputError, match=r"added vectors: expected an array of numbers, got dtype <U1"):
        index.add(np.array([["a"] * 4]))
    assert index.ntotal == 10
    with pytest.raises(InvalidInputError, match=r"queries have dimension 5, the index has d = 4"):
        index.search(rand(2, 5), 1)
    with pytest.raises(InvalidInputError, match=r"queries: row 0, component 0 is inf"):
        index.search(np.full((1, 4), np.inf, np.float32), 1)
    with pytest.raises(InvalidInputError, match=r"queries: expected a 2-D array .* got 3-D"):
        index.search(np.ones((1, 1, 4), np.float32), 1)
    with pytest.raises(InvalidInputError, match=r"k = 0 is invalid"):
        index.search(rand(1, 4), 0)
    assert index.search(rand(1, 4), 1)[1].shape == (1, 1)


@pytest.mark.parametrize(
    "args,kwargs,cls,match",
    [
        ((0,), {}, InvalidInputError, r"invalid dimension: 0"),
        ((-3,), {}, InvalidInputError, r"invalid dimension: -3"),
        ((4, "cosinus"), {}, InvalidInputError, r"invalid metric"),
        ((4, 2), {}, InvalidInputError, r"metric_type 2: a flat index serves L2 \(1\), inner product \(0\) and cosine"),
        ((4,), {"device": [0, -1]}, InvalidInputError, r"cannot appear in a list"),
        ((4,), {"threads": 0}, InvalidInputError, r"invalid threads: 0"),
    ],
)
def test_flat_index_bad_construction(args, kwargs, cls, match):
    with pytest.raises(cls, match=match):
        faiss_nn.FlatIndex(*args, **kwargs)


# --- knn_table ----------------------------------------------------------------------------


def _table(col, extra=None):
    cols = {"embedding": col}
    cols.update(extra or {})
    return pa.table(cols)


@pytest.mark.parametrize(
    "table,kwargs,match",
    [
        (_table(pa.array([[1.0, 2.0], [3.0, 4.0]])), {"column": "vector"}, r"table: no column 'vector'; the columns are: 'embedding'"),
        (_table(pa.array([[1.0, 2.0], [3.0], [4.0, 5.0]])), {}, r"ragged rows in column 'embedding': row 1 has 1 values, expected 2"),
        (_table(pa.array([[1.0, 2.0], None, [4.0, 5.0]])), {}, r"column 'embedding': row 1 is null"),
        (_table(pa.array([[1.0, 2.0], [3.0, None], [4.0, 5.0]])), {}, r"column 'embedding': row 1, component 1 is null"),
        (_table(pa.array([["a", "b"], ["c", "d"]])), {}, r"column 'embedding' has type list<item: string>; its values must be numbers"),
        (_table(pa.array([1.0, 2.0, 3.0])), {}, r"column 'embedding' has type double; expected list<float>"),
        (_table(pa.array([[1.0, 2.0], [np.nan, 4.0], [0.0, 1.0]])), {}, r"column 'embedding': row 1, component 0 is NaN"),
        (_table(pa.array([[1.0, 2.0], [3.0, 4.0]])), {"k": 2}, r"k = 2 is invalid"),
        (_table(pa.array([[1.0, 2.0], [3.0, 4.0]])), {"k": 0}, r"k = 0 is invalid"),
        (_table(pa.array([[1.0, 2.0], [3.0, 4.0]], type=pa.list_(pa.float32()))).slice(0, 0), {}, r"column 'embedding' is empty"),
        (_table(pa.array([[1.0, 2.0], [3.0, 4.0]])), {"device": "x"}, r"invalid device"),
        (_table(pa.array([[1.0, 2.0], [3.0, 4.0]])), {"column": "nn_scores", "overwrite": True}, r"'nn_scores' is an output column"),
    ],
)
def test_knn_table_bad_input(table, kwargs, match):
    before = table.column_names
    with pytest.raises(InvalidInputError, match=match):
        faiss_nn.knn_table(table, **kwargs)
    assert table.column_names == before


def test_knn_table_refuses_what_is_not_a_table():
    with pytest.raises(InvalidInputError, match=r"expected a pyarrow.Table, got dict"):
        faiss_nn.knn_table({"embedding": [[1.0]]})
