"""faiss_nn.knn_table: pyarrow tables in and out."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import faiss_nn
from conftest import SMALL


def rand(n, d, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def table_of(x, typ="list", value_type=pa.float32()):
    flat = pa.array(x.reshape(-1), type=value_type)
    n, d = x.shape
    if typ == "fixed":
        col = pa.FixedSizeListArray.from_arrays(flat, d)
    elif typ == "large":
        col = pa.LargeListArray.from_arrays(pa.array(np.arange(0, n * d + 1, d, dtype=np.int64)), flat)
    else:
        col = pa.ListArray.from_arrays(pa.array(np.arange(0, n * d + 1, d, dtype=np.int32)), flat)
    return pa.table({"id": pa.array(np.arange(n)), "embedding": col})


@pytest.mark.parametrize("typ", ["list", "large", "fixed"])
@pytest.mark.parametrize("value_type", [pa.float32(), pa.float64(), pa.float16()])
def test_list_columns_give_self_knn(typ, value_type):
    x = rand(120, 12).astype(value_type.to_pandas_dtype()).astype(np.float32)
    t = table_of(x, typ, value_type)
    out = faiss_nn.knn_table(t, k=4)
    i, s = faiss_nn.self_knn(x, k=4)
    assert out.column_names == ["id", "embedding", "nn_indices", "nn_scores"]
    # The command-line tool's types: non-null lists of non-null items (the tables concatenate).
    for name, item in (("nn_indices", pa.int64()), ("nn_scores", pa.float32())):
        field = out.schema.field(name)
        assert field.type == pa.list_(pa.field("item", item, nullable=False)) and not field.nullable
    assert out.column("nn_indices").to_pylist() == i.tolist()
    assert out.column("nn_scores").to_pylist() == s.tolist()
    assert out.column("embedding").equals(t.column("embedding"))


def test_chunked_and_sliced_columns():
    x = rand(300, 8, 2)
    t = pa.concat_tables([table_of(x[:100]), table_of(x[100:250]), table_of(x[250:])])
    assert t.column("embedding").num_chunks == 3
    out = faiss_nn.knn_table(t, k=3, metric="ip")
    assert out.column("nn_indices").to_pylist() == faiss_nn.self_knn(x, k=3, metric="ip")[0].tolist()
    sliced = table_of(x).slice(37, 200)
    out = faiss_nn.knn_table(sliced, k=3)
    assert out.column("nn_indices").to_pylist() == faiss_nn.self_knn(x[37:237], k=3)[0].tolist()


def test_the_bundled_parquet_file_and_its_other_columns():
    t = pq.read_table(SMALL)
    out = faiss_nn.knn_table(t, k=5)
    assert out.num_rows == t.num_rows
    assert out.select(t.column_names).equals(t)
    x = np.asarray(t.column("embedding").to_pylist(), dtype=np.float32)
    assert out.column("nn_indices").to_pylist() == faiss_nn.self_knn(x, k=5)[0].tolist()


def test_other_column_name_and_record_batches():
    x = rand(40, 4)
    t = table_of(x).rename_columns(["id", "vec"])
    out = faiss_nn.knn_table(t.to_batches()[0], column="vec", k=2)
    assert out.column("nn_indices").to_pylist() == faiss_nn.self_knn(x, k=2)[0].tolist()


def test_existing_outputs_need_overwrite():
    x = rand(30, 4)
    once = faiss_nn.knn_table(table_of(x), k=2)
    with pytest.raises(faiss_nn.InvalidInputError, match="already has column.*'nn_indices'.*overwrite=True"):
        faiss_nn.knn_table(once, k=3)
    twice = faiss_nn.knn_table(once, k=3, overwrite=True)
    assert twice.column_names == once.column_names
    assert twice.column("nn_indices").to_pylist() == faiss_nn.self_knn(x, k=3)[0].tolist()


def test_two_columns_of_the_embeddings_name_are_refused():
    t = pa.table([pa.array([[1.0, 2.0], [3.0, 4.0]]), pa.array([[1.0, 2.0], [3.0, 4.0]])], names=["embedding", "embedding"])
    with pytest.raises(faiss_nn.InvalidInputError, match="2 columns are named 'embedding'"):
        faiss_nn.knn_table(t, k=1)
