"""faiss_nn.ray: the self-join sharded over Ray actors equals the single-process call on a local
cluster (P = 1..4, uneven blocks, blocks smaller than k, both metrics, both schedules, matrix,
Dataset and Parquet sources), under an actor that dies mid-run, and refuses bad arguments. The
two-node cluster: test_ray_two_nodes.py; the distilabel step with shards: test_distilabel_pipeline.py."""

from __future__ import annotations

import platform

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ray = pytest.importorskip("ray")

import faiss_nn  # noqa: E402
import faiss_nn.ray as fray  # noqa: E402
from conftest import DEMO, DUPS, read_embeddings  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def data():
    x, _ = read_embeddings(DEMO)
    x = x[:600]
    dups, _ = read_embeddings(DUPS)
    # Real rows plus exact duplicates and ties (the 400-row subset holds four identical pairs).
    return np.ascontiguousarray(np.concatenate([x, dups[:200]]))


def test_pair_plan_covers_every_pair_once_and_balances():
    for blocks in range(1, 12):
        for shards in range(1, 6):
            plan = fray.pair_owners(blocks, shards)
            pairs = [(i, j) for i, j, _ in plan]
            assert sorted(pairs) == [(i, j) for i in range(blocks) for j in range(i, blocks)]
            owners = {p for _, _, p in plan}
            assert owners <= set(range(min(shards, blocks))) | set(range(shards))
            for i, j, p in plan:
                held = {fray.block_owner(i, blocks, shards), fray.block_owner(j, blocks, shards)}
                assert p in held, (blocks, shards, i, j, p)
    # Off-diagonal work per block splits about evenly between its owner and the others.
    plan = fray.pair_owners(16, 4)
    load = np.bincount([p for i, j, p in plan if i != j], minlength=4)
    assert load.max() - load.min() <= 4, load


def test_plan_blocks_uneven_and_fixed():
    assert fray.plan_blocks(10, 2) == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert fray.plan_blocks(5, 4, block_rows=2) == [(0, 2), (2, 4), (4, 5)]
    assert fray.plan_blocks(3, 8) == [(0, 1), (1, 2), (2, 3)]
    with pytest.raises(faiss_nn.InvalidInputError):
        fray.plan_blocks(0, 2)


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize(
    "shards,block_rows",
    [(1, None), (2, None), (3, 97), (4, 5)],  # 5-row blocks are smaller than k
)
def test_equals_single_process(cluster, data, metric, shards, block_rows):
    k = 8
    if block_rows == 5:
        # Each block pair is a Ray task: 240 rows (the duplicates and ties among them) make 48
        # blocks and 1,176 tasks, where all 800 would make 12,880 (a minute on two cores).
        data = np.ascontiguousarray(data[-240:])
    want_i, want_s = faiss_nn.self_knn(data, k=k, metric=metric)
    got_i, got_s = fray.self_knn(data, k=k, metric=metric, shards=shards, block_rows=block_rows, collect=True)
    # Exact scores and the same tie rule: identical, not merely tie-equivalent.
    assert np.array_equal(got_i, want_i)
    assert np.array_equal(got_s, want_s)
    assert not (got_i == np.arange(len(data))[:, None]).any(), "a row listed itself"


def test_broadcast_schedule_equals_symmetric(cluster, data):
    want_i, want_s = faiss_nn.self_knn(data, k=5)
    got_i, got_s = fray.self_knn(data, k=5, shards=3, schedule="broadcast", collect=True)
    assert np.array_equal(got_i, want_i) and np.array_equal(got_s, want_s)


def _near_copies():
    # 150 near-copies of one row, more than the int8 candidates a row keeps at k = 5 (at most
    # 69): under inner products (no centring, which under L2 would separate a block of copies)
    # unproven int8 lists miss neighbours among them.
    rng = np.random.default_rng(4)
    x = rng.standard_normal((300, 64)).astype(np.float32)
    copies = x[0] + 1e-4 * rng.standard_normal((150, 64)).astype(np.float32)
    return np.ascontiguousarray(np.vstack([x, copies]))


def test_precision_and_approximate_reach_the_actors(cluster):
    x = _near_copies()
    want = faiss_nn.self_knn(x, k=5, metric="ip", precision="f32")
    # Proven int8 lists (each block's, then merged) and f32 lists, approximate or not: exact.
    for precision, approximate in (("int8", False), ("bf16", False), ("f32", True)):
        got = fray.self_knn(x, k=5, metric="ip", shards=2, precision=precision, approximate=approximate, collect=True)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1]), precision
    loose = fray.self_knn(x, k=5, metric="ip", shards=2, precision="int8", approximate=True, collect=True)
    hits = [len(set(a) & set(b)) for a, b in zip(loose[0].tolist(), want[0].tolist())]
    # Plain rows whose exact lists hold none of the copies (nor their original, row 0) have
    # neighbours that stand apart: their unproven lists still hold them.
    plain = [r for r in range(300) if not any(i == 0 or i >= 300 for i in want[0][r])]
    assert len(plain) > 290 and sum(hits[r] for r in plain) >= 0.99 * len(plain) * 5
    if platform.machine().lower() in ("x86_64", "amd64"):
        assert sum(hits[300:]) < 150 * 5, "the actors' unproven int8 lists should miss neighbours among the copies"
    # Checked on the driver, before any actor starts.
    with pytest.raises(faiss_nn.InvalidInputError, match="precision"):
        fray.self_knn(x, k=5, shards=2, precision="int4", collect=True)
    with pytest.raises(faiss_nn.InvalidInputError, match="invalid approximate"):
        fray.self_knn(x, k=5, shards=2, approximate="yes", collect=True)


def test_the_distilabel_steps_precision_reaches_the_actors(cluster):
    pytest.importorskip("distilabel")
    from faiss_nn.distilabel import FaissNearestNeighbour

    x = _near_copies()
    rows = [{"embedding": r.tolist()} for r in x]
    want = faiss_nn.self_knn(x, k=5, metric="ip", precision="f32")
    out = {}
    for approximate in (False, True):
        step = FaissNearestNeighbour(
            k=5, metric_type=0, shards=2, precision="int8", approximate=approximate, save_index=False
        )
        step.load()
        out[approximate] = np.array([r["nn_indices"] for r in next(step.process(rows))])
        step.unload()
    assert np.array_equal(out[False], want[0])
    if platform.machine().lower() in ("x86_64", "amd64"):
        assert not np.array_equal(out[True], want[0])


def test_dataset_source_keeps_columns_and_writes_files(cluster, tmp_path):
    table = pq.read_table(DEMO).slice(0, 300)
    ds = ray.data.from_arrow(table).repartition(3)
    out = tmp_path / "out"
    assert fray.self_knn(ds, k=3, shards=2, block_rows=70, output=out) == str(out)
    files = sorted(p.name for p in out.iterdir())
    assert files == [f"part-{i:05d}.parquet" for i in range(5)], files
    got = pa.concat_tables([pq.read_table(out / f) for f in files])
    assert got.column("package").to_pylist() == table.column("package").to_pylist()
    x, _ = read_embeddings(DEMO)
    want_i, want_s = faiss_nn.self_knn(x[:300], k=3)
    assert got.column("nn_indices").to_pylist() == want_i.tolist()
    assert np.array_equal(np.array(got.column("nn_scores").to_pylist(), dtype=np.float32), want_s)
    assert [p.name for p in tmp_path.iterdir()] == ["out"], "a temporary directory was left behind"
    with pytest.raises(faiss_nn.InvalidInputError, match="already exists"):
        fray.self_knn(ds, k=3, output=out)


def test_parquet_path_source_returns_dataset(cluster, tmp_path):
    table = pq.read_table(DEMO).slice(0, 120)
    pq.write_table(table, tmp_path / "in.parquet")
    ds = fray.self_knn(str(tmp_path / "in.parquet"), k=2, metric="ip", shards=2)
    got = pa.concat_tables(ray.get(ds.to_arrow_refs()))
    x, _ = read_embeddings(DEMO)
    want_i, _ = faiss_nn.self_knn(x[:120], k=2, metric="ip")
    assert got.column("nn_indices").to_pylist() == want_i.tolist()


def test_an_actor_dying_mid_run_still_gives_the_exact_result(cluster, data, tmp_path):
    marker = tmp_path / "died"
    want_i, want_s = faiss_nn.self_knn(data, k=4)
    got_i, got_s = fray.self_knn(data, k=4, shards=2, block_rows=100, collect=True, _fail_after=(2, str(marker)))
    assert marker.exists(), "the fault was not injected"
    assert np.array_equal(got_i, want_i) and np.array_equal(got_s, want_s)


def test_without_restarts_a_death_is_a_clear_error_and_no_output(cluster, data, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(fray.RayRunError, match="distributed self-join failed"):
        fray.self_knn(
            data, k=4, shards=2, block_rows=100, output=out, max_restarts=0, max_task_retries=0,
            _fail_after=(1, str(tmp_path / "died")),
        )
    assert list(tmp_path.iterdir()) == [tmp_path / "died"], list(tmp_path.iterdir())


def test_bad_arguments(cluster, data):
    with pytest.raises(faiss_nn.InvalidInputError, match="k = 800"):
        fray.self_knn(data[:800], k=800)
    with pytest.raises(faiss_nn.InvalidInputError, match="schedule"):
        fray.self_knn(data, schedule="ring")
    with pytest.raises(faiss_nn.InvalidInputError, match="shards"):
        fray.self_knn(data, shards=0)
    with pytest.raises(faiss_nn.InvalidInputError, match="metric"):
        fray.self_knn(data, metric=2)
    bad = data[:50].copy()
    bad[7, 3] = np.nan
    with pytest.raises(faiss_nn.InvalidInputError, match="row 7, component 3"):
        fray.self_knn(bad, k=2, shards=2, collect=True)


def _hold_three_cpus():
    """An actor of other work holding 3 of the cluster's 4 CPUs, once it runs."""

    @ray.remote(num_cpus=3)
    class Hold:
        def ping(self):
            return 1

    h = Hold.remote()
    ray.get(h.ping.remote())
    return h


def _free_cpus(want, timeout=20.0):
    """Waits until the cluster has `want` CPUs available again (killed actors release theirs
    asynchronously); returns what it last saw."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        free = ray.available_resources().get("CPU", 0)
        if free >= want or time.monotonic() > deadline:
            return free
        time.sleep(0.1)


def test_actors_end_with_the_call_unless_kept(cluster, data):
    """A call's actors hold CPUs: they end with the call (else the cluster's other work, Ray Data
    included, could wait for them forever); kept ones end before Ray Data needs the CPUs."""
    want_i, _ = faiss_nn.self_knn(data, k=3)
    # (Made first: while kept actors hold every CPU, no Ray Data call can run, from_arrow included.)
    ds = ray.data.from_arrow(pa.table({"embedding": [list(map(float, r)) for r in data[:101]]}))
    got_i, _ = fray.self_knn(data, k=3, shards=4, collect=True)
    assert np.array_equal(got_i, want_i)
    assert not fray._POOLS and _free_cpus(4) == 4 and not _live_groups()
    # Kept: the next call reuses them; all 4 CPUs are held meanwhile.
    fray.self_knn(data, k=3, shards=4, collect=True, keep_actors=True)
    pool = next(iter(fray._POOLS.values()))
    fray.self_knn(data, k=3, shards=4, collect=True, keep_actors=True)
    assert next(iter(fray._POOLS.values())) is pool
    # A Dataset source and a Dataset result both need CPUs for Ray Data: the kept actors end
    # first, and this finishes.
    out = fray.self_knn(ds, k=3, shards=4, keep_actors=True)
    got = pa.concat_tables(ray.get(out.to_arrow_refs()))
    assert got.column("nn_indices").to_pylist() == faiss_nn.self_knn(data[:101], k=3)[0].tolist()
    assert not fray._POOLS and _free_cpus(4) == 4 and not _live_groups()
    assert ray.data.from_numpy(data[:10]).map_batches(lambda b: b).count() == 10


def test_actors_the_cluster_cannot_place_are_refused(cluster, data):
    for kwargs, match in (
        ({"shards": 5}, r"5 shards of 1 CPU\(s\).*room for 4"),
        ({"shards": 1, "threads_per_shard": 5}, r"1 shards of 5 CPU\(s\).*room for 0"),
        ({"shards": 2, "num_gpus_per_shard": 1}, r"0 GPUs: room for 0"),
    ):
        with pytest.raises(faiss_nn.InvalidInputError, match=match + r".*within 1 s"):
            fray.self_knn(data, k=2, collect=True, placement_timeout=1, **kwargs)
    assert not fray._POOLS and _free_cpus(4) == 4 and not _live_groups()


def test_errors_found_by_an_actor_keep_their_kind(cluster):
    huge = np.full((8, 4), 3e38, np.float32)
    with pytest.raises(faiss_nn.InvalidInputError, match="too large") as e:
        fray.self_knn(huge, k=1, shards=2, collect=True)
    assert not isinstance(e.value, fray.RayRunError) and "Traceback" not in str(e.value)
    x = np.random.default_rng(3).random((40, 4), dtype=np.float32)
    with pytest.raises(faiss_nn.UnsupportedError):
        fray.self_knn(x, k=1, shards=2, device=0, collect=True)


def test_busy_cpus_are_waited_for_then_refused(cluster, data):
    """The cluster has room for the actors but other work holds the CPUs: the call waits
    placement_timeout, then refuses (it used to wait forever)."""
    h = _hold_three_cpus()
    try:
        with pytest.raises(faiss_nn.InvalidInputError, match=r"busy with other work.*raise placement_timeout"):
            fray.self_knn(data, k=2, shards=2, collect=True, placement_timeout=1)
    finally:
        ray.kill(h)
    assert not fray._POOLS and _free_cpus(4) == 4 and not _live_groups()


def _live_groups():
    """Placement groups not removed: each call's actors live in one, removed with them."""
    from ray.util.placement_group import placement_group_table

    return [g for g in placement_group_table().values() if g["state"] != "REMOVED"]


def test_refused_calls_leave_no_cpu_held(cluster, data):
    """A refused call holds nothing afterwards, however often it is refused. (An actor left
    pending by a refused call once started later and held a CPU for the rest of the session; that
    race was rare, so this guards the placement group's removal rather than reproducing it.)"""
    for shards in (2, 4, 2):
        h = _hold_three_cpus()
        try:
            with pytest.raises(faiss_nn.InvalidInputError, match="busy with other work"):
                fray.self_knn(data, k=2, shards=shards, collect=True, placement_timeout=0.5)
        finally:
            ray.kill(h)
        assert _free_cpus(4) == 4 and not _live_groups(), shards
    got, _ = fray.self_knn(data, k=2, shards=4, collect=True)
    assert np.array_equal(got, faiss_nn.self_knn(data, k=2)[0])


def test_a_call_waiting_for_cpus_holds_none_meanwhile(cluster, data):
    """The actors' CPUs are taken all at once: while other work holds some, the waiting call
    holds none (actors that started one by one would each hold its CPU meanwhile), and it runs
    once they are free."""
    import threading
    import time

    h = _hold_three_cpus()
    result = {}

    def run():
        try:
            result["got"] = fray.self_knn(data, k=2, shards=2, collect=True, placement_timeout=120)[0]
        except BaseException as e:  # noqa: BLE001 - reported below
            result["error"] = e

    t = threading.Thread(target=run)
    t.start()
    try:
        time.sleep(3)
        assert ray.available_resources().get("CPU", 0) == 1 and t.is_alive()
    finally:
        ray.kill(h)
    t.join(150)
    assert not t.is_alive() and "error" not in result, result.get("error")
    assert np.array_equal(result["got"], faiss_nn.self_knn(data, k=2)[0])
    assert not fray._POOLS and _free_cpus(4) == 4 and not _live_groups()


def test_parquet_directories_and_globs_are_read_in_file_order(cluster, tmp_path, monkeypatch):
    table = pq.read_table(DEMO).slice(0, 200)
    src = tmp_path / "src"
    src.mkdir()
    pq.write_table(table.slice(0, 100), src / "a.parquet")
    pq.write_table(table.slice(100, 100), src / "b.parquet")
    (src / "_SUCCESS").write_text("")
    x, _ = read_embeddings(DEMO)
    want, _ = faiss_nn.self_knn(x[:200], k=3)
    # A directory, a glob and a list name the same files in the same order (hidden and `_`
    # names skipped); each Ray Data read costs seconds here, so one of them runs end to end.
    files = [str(src / "a.parquet"), str(src / "b.parquet")]
    for source in (str(src), str(src / "*.parquet"), files):
        assert fray._parquet_paths(source) == files, source
    got, _ = fray.self_knn(str(src / "*.parquet"), k=3, shards=2, collect=True)
    assert np.array_equal(got, want)
    with pytest.raises(faiss_nn.IoError, match="no file matches"):
        fray.self_knn(str(tmp_path / "none*.parquet"), k=3, collect=True)
    with pytest.raises(faiss_nn.IoError, match="no such file"):
        fray.self_knn(str(tmp_path / "missing.parquet"), k=3, collect=True)
    # A relative output directory is the driver's (the actors resolve nothing themselves).
    monkeypatch.chdir(tmp_path)
    out = fray.self_knn(str(src), k=3, shards=2, output="relative-out")
    assert (tmp_path / "relative-out").is_dir() and sorted(p.name for p in (tmp_path / "relative-out").iterdir())[0] == "part-00000.parquet"
    assert str(out) in (str(tmp_path / "relative-out"), "relative-out")
    written = pq.read_table(tmp_path / "relative-out")
    assert written.column("nn_indices").to_pylist() == want.tolist()


def test_bad_rows_of_a_dataset_are_named_by_their_global_row(cluster):
    """A Dataset is converted block by block on the cluster; its errors still name the data
    set's row, not the block's."""
    table = pq.read_table(DEMO).slice(0, 200).select(["embedding"])
    rows = table.column("embedding").to_pylist()

    def run(rows):
        ds = ray.data.from_arrow(pa.table({"embedding": rows})).repartition(5)
        fray.self_knn(ds, k=3, shards=3, block_rows=40, collect=True)

    for bad, match in (
        ({150: None}, r"row 150 is null"),
        ({150: rows[150][:5]}, r"row 150 has 5 values, expected 384 \(the dimension of row 0\)"),
        ({r: rows[r][:5] for r in range(160, 200)}, r"row 160 has 5 values, expected 384 \(the dimension of row 0\)"),
        # A block's first row alone (blocks of 40 rows: row 120 starts one).
        ({120: rows[120][:5]}, r"row 120 has 5 values, expected 384 \(the dimension of row 0\)"),
        ({0: rows[0][:5]}, r"row 1 has 384 values, expected 5 \(the dimension of row 0\)"),
        ({150: [float("nan")] * 384}, r"row 150, component 0 is nan"),
    ):
        with pytest.raises(faiss_nn.InvalidInputError, match=match):
            run([bad.get(r, v) for r, v in enumerate(rows)])


def test_ray_tensor_columns_are_embeddings(cluster, data):
    """ray.data.from_numpy (column "data") and rows holding numpy arrays give tensor columns."""
    got, _ = fray.self_knn(ray.data.from_numpy(data[:150]), k=3, shards=2, column="data", collect=True)
    assert np.array_equal(got, faiss_nn.self_knn(data[:150], k=3)[0])


def test_bad_numeric_arguments_are_the_packages_errors(cluster, data):
    for name, value in (
        ("block_rows", 2.5),
        ("block_rows", "10"),
        ("threads_per_shard", -1),
        ("num_gpus_per_shard", -1),
        ("max_restarts", -5),
        ("max_task_retries", "x"),
        ("placement_timeout", float("nan")),
    ):
        with pytest.raises(faiss_nn.InvalidInputError, match=f"invalid {name}"):
            fray.self_knn(data, **{name: value})


@pytest.mark.parametrize("metric,t", [("cosine", 0.85), ("l2", 0.3), ("ip", 0.85)])
def test_threshold_join_and_groups_equal_single_process(cluster, data, metric, t):
    want = faiss_nn.range_pairs(data, t, metric)
    assert len(want[0]) > 20, "the case must have pairs"
    want_g = faiss_nn.dedup(data, t, metric)
    # 23-row blocks: 35 blocks, 630 block pairs (Ray tasks) per call.
    for shards, block_rows in [(1, None), (3, 97), (4, 23)]:
        got = fray.range_pairs(data, t, metric, shards=shards, block_rows=block_rows)
        assert all(np.array_equal(a, b) for a, b in zip(got, want)), (shards, block_rows)
        g = fray.dedup(data, t, metric, shards=shards, block_rows=block_rows)
        assert np.array_equal(g[0], want_g[0]) and np.array_equal(g[1], want_g[1])
    assert not fray._POOLS and _free_cpus(4) == 4 and not _live_groups()


def test_distributed_dedup_keeps_by_a_dataset_column(cluster):
    table = pq.read_table(DEMO).slice(0, 300)
    x, _ = read_embeddings(DEMO)
    ds = ray.data.from_arrow(table).repartition(3)
    group, keep = fray.dedup(ds, 0.8, keep="max", by="text", shards=2, block_rows=70)
    want = faiss_nn.dedup(x[:300], 0.8, keep="max", by=table.column("text"))
    assert np.array_equal(group, want[0]) and np.array_equal(keep, want[1])
    with pytest.raises(faiss_nn.InvalidInputError, match="no column 'size'"):
        fray.dedup(ds, 0.8, keep="max", by="size", shards=2)
    with pytest.raises(faiss_nn.InvalidInputError, match="passes more than max_pairs = 5"):
        fray.range_pairs(x[:300], 0.3, shards=2, max_pairs=5)
    with pytest.raises(faiss_nn.InvalidInputError, match="selects no pair"):
        fray.range_pairs(x[:300], 1.0, shards=2)


def test_matrix_sources_need_neither_ray_data_nor_pandas(tmp_path):
    """Ray installed without Ray Data (no pandas): a matrix source still runs."""
    import subprocess
    import sys

    script = tmp_path / "no_data.py"
    script.write_text(
        "import sys\n"
        "sys.modules['ray.data'] = None\n"
        "sys.modules['pandas'] = None\n"
        "import numpy as np, ray, faiss_nn, faiss_nn.ray as fray\n"
        "ray.init(address='local', num_cpus=2, include_dashboard=False, log_to_driver=False)\n"
        "x = np.random.default_rng(0).random((60, 8), dtype=np.float32)\n"
        "got, _ = fray.self_knn(x, k=2, shards=2, collect=True)\n"
        "assert np.array_equal(got, faiss_nn.self_knn(x, k=2)[0])\n"
        "p = fray.range_pairs(x, 0.9, shards=2)\n"
        "assert all(np.array_equal(a, b) for a, b in zip(p, faiss_nn.range_pairs(x, 0.9)))\n"
        # A pool kept past the end of its Ray session is forgotten, not ended through Ray (which
        # would start a new local session); a new session starts a pool of its own.
        "fray.self_knn(x, k=2, shards=2, collect=True, keep_actors=True)\n"
        "ray.shutdown()\n"
        "import time\n"
        "t = time.monotonic(); fray.shutdown(); t = time.monotonic() - t\n"
        "assert not ray.is_initialized() and not fray._POOLS and t < 2, t\n"
        "fray.self_knn(x, k=2, shards=2, collect=True, keep_actors=True)\n"
        "ray.shutdown()\n"
        "ray.init(address='local', num_cpus=2, include_dashboard=False, log_to_driver=False)\n"
        "got, _ = fray.self_knn(x, k=2, shards=2, collect=True)\n"
        "assert np.array_equal(got, faiss_nn.self_knn(x, k=2)[0])\n"
        "ray.shutdown()\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]
