"""The faiss IndexFlat file writer against faiss's own serialisation."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from faiss_nn._faiss_io import write_flat_index


@pytest.mark.parametrize("metric,cls", [(1, faiss.IndexFlatL2), (0, faiss.IndexFlatIP)])
def test_byte_identical_to_faiss(tmp_path, metric, cls):
    x = np.random.default_rng(0).standard_normal((37, 5)).astype(np.float32)
    path = tmp_path / "index.faiss"
    write_flat_index(path, x, metric)
    ref = cls(5)
    ref.add(x)
    assert path.read_bytes() == faiss.serialize_index(ref).tobytes()
    back = faiss.read_index(str(path))
    assert back.metric_type == metric and np.array_equal(back.reconstruct_n(0, 37), x)
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("metric", [2, 3, 20, 21, 22])
def test_other_flat_metrics_byte_identical_to_faiss(tmp_path, metric):
    x = np.random.default_rng(1).random((11, 4)).astype(np.float32)
    path = tmp_path / "index.faiss"
    write_flat_index(path, x, metric)
    ref = faiss.IndexFlat(4, metric)
    ref.add(x)
    assert path.read_bytes() == faiss.serialize_index(ref).tobytes()
    back = faiss.read_index(str(path))
    assert back.metric_type == metric and np.array_equal(back.reconstruct_n(0, 11), x)


def test_refuses_what_it_cannot_write(tmp_path):
    with pytest.raises(ValueError, match="metric 0, 1, 2, 3, 20, 21 or 22"):
        write_flat_index(tmp_path / "i", np.ones((2, 2), np.float32), 4)
    with pytest.raises(ValueError, match="C-contiguous float32"):
        write_flat_index(tmp_path / "i", np.ones((2, 2)), 1)
    assert not list(tmp_path.iterdir())
