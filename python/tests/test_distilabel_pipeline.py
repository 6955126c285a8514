"""A real distilabel Pipeline (loader >> our step) runs end to end, in distilabel's worker
processes, and its output equals a direct self_knn call; the artifact is a faiss index."""

from __future__ import annotations

import json

import faiss
import pytest
import numpy as np
import pyarrow.parquet as pq
from distilabel.pipeline import Pipeline
from distilabel.steps import LoadDataFromDicts

import faiss_nn
from conftest import SMALL
from faiss_nn.distilabel import FaissNearestNeighbour


def test_pipeline_output_equals_self_knn(tmp_path):
    rows = pq.read_table(SMALL).to_pylist()
    x = np.array([r["embedding"] for r in rows], dtype=np.float32)
    # The parent process searches first: the step must still run in the forked workers.
    want_i, want_s = faiss_nn.self_knn(x, k=4)

    # A fresh cache_dir: a pipeline of the same name would otherwise read back an old run.
    with Pipeline(name="faiss-nn-pipeline-test", cache_dir=tmp_path / "cache") as pipeline:
        load = LoadDataFromDicts(data=rows, batch_size=64)
        nn = FaissNearestNeighbour(k=4)
        load >> nn

    distiset = pipeline.run(use_cache=False)
    out = distiset["default"]["train"]
    assert out.num_rows == len(rows)
    assert out["text"] == [r["text"] for r in rows]
    assert out["nn_indices"] == want_i.tolist()
    assert np.array_equal(np.array(out["nn_scores"], dtype=np.float32), want_s)

    # The faiss_index artifact, as distilabel's step stores it: faiss reads it back.
    found = list((tmp_path / "cache").rglob("faiss_index/index.faiss"))
    assert len(found) == 1, found
    index = faiss.read_index(str(found[0]))
    assert (index.ntotal, index.d, index.metric_type) == (len(rows), x.shape[1], faiss.METRIC_L2)
    assert np.array_equal(index.reconstruct_n(0, index.ntotal), x)
    meta = json.loads((found[0].parent / "metadata.json").read_text())
    assert meta == {"num_rows": 200, "embedding_dim": 384}


def test_pipeline_with_shards_fans_out_over_ray(tmp_path):
    pytest.importorskip("ray")
    rows = pq.read_table(SMALL).to_pylist()
    x = np.array([r["embedding"] for r in rows], dtype=np.float32)
    want_i, want_s = faiss_nn.self_knn(x, k=3)
    with Pipeline(name="faiss-nn-pipeline-ray-test", cache_dir=tmp_path / "cache") as pipeline:
        load = LoadDataFromDicts(data=rows, batch_size=64)
        # shards=2: the step starts a local Ray cluster (none is running) and two actors.
        nn = FaissNearestNeighbour(k=3, shards=2, save_index=False)
        load >> nn
    out = pipeline.run(use_cache=False)["default"]["train"]
    assert out["nn_indices"] == want_i.tolist()
    assert np.array_equal(np.array(out["nn_scores"], dtype=np.float32), want_s)


def test_a_step_that_started_ray_shuts_it_down_on_unload():
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        ray.shutdown()
    rows = pq.read_table(SMALL).to_pylist()[:40]
    step = FaissNearestNeighbour(k=2, shards=2, save_index=False)
    step.load()
    next(step.process(rows))
    assert ray.is_initialized()
    step.unload()
    assert not ray.is_initialized()
    # A runtime the caller started is left running.
    ray.init(num_cpus=2)
    try:
        step = FaissNearestNeighbour(k=2, shards=2, save_index=False)
        step.load()
        next(step.process(rows))
        step.unload()
        assert ray.is_initialized()
    finally:
        ray.shutdown()
