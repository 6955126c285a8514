"""faiss_nn.ray on a two-node Ray cluster started on loopback (its own module: `ray stop`
ends every Ray process of this machine, so no other test's cluster may be running)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pytest

pytest.importorskip("ray")

from conftest import DEMO, read_embeddings  # noqa: E402

TWO_NODE = textwrap.dedent(
    """
    import sys, numpy as np, ray
    import faiss_nn, faiss_nn.ray as fray
    ray.init(address=sys.argv[1], log_to_driver=False)
    assert len([n for n in ray.nodes() if n["Alive"]]) == 2, ray.nodes()
    x = np.load(sys.argv[2])
    want_i, want_s = faiss_nn.self_knn(x, k=6)
    got_i, got_s = fray.self_knn(x, k=6, shards=2, block_rows=90, collect=True)
    assert np.array_equal(got_i, want_i) and np.array_equal(got_s, want_s)
    print("TWO-NODE-OK")
    """
)


def test_two_node_cluster_on_loopback(tmp_path):
    x, _ = read_embeddings(DEMO)
    np.save(tmp_path / "x.npy", x[:400])
    port = 6391
    # Ray's socket paths must fit AF_UNIX's 107 bytes: pytest's tmp_path is too long for them.
    ray_tmp = tempfile.mkdtemp(prefix="fnn-ray-", dir="/tmp")
    # A loopback-only test cluster: no token authentication between its processes.
    env = dict(os.environ, RAY_ENABLE_UV_RUN_RUNTIME_ENV="0", RAY_AUTH_MODE="disabled")
    head = ["ray", "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=1",
            "--include-dashboard=false", f"--temp-dir={ray_tmp}"]
    worker = ["ray", "start", f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.1", "--num-cpus=1"]
    try:
        subprocess.run(head, check=True, capture_output=True, env=env, timeout=120)
        subprocess.run(worker, check=True, capture_output=True, env=env, timeout=120)
        script = tmp_path / "two_node.py"
        script.write_text(TWO_NODE)
        r = subprocess.run(
            [sys.executable, str(script), f"127.0.0.1:{port}", str(tmp_path / "x.npy")],
            capture_output=True, text=True, env=env, timeout=300,
        )
        assert "TWO-NODE-OK" in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]
    finally:
        subprocess.run(["ray", "stop", "--force"], capture_output=True, env=env, timeout=120)
        shutil.rmtree(ray_tmp, ignore_errors=True)
