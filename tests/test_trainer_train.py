"""End-to-end training in one process: outputs, learning on real data, exact resume."""

import json
import os
import platform
import re
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch
from graphdir_fixture import MPD_SAMPLE, sample_graph_dir, toy_graph_dir

import trainer.gnn.full_graph as full_graph_module
import trainer.gnn.sampled as sampled_module
from etl import contract
from trainer.config import ConfigError, TrainConfig
from trainer.gnn.divergence import TrainingDiverged
from trainer.gnn.losses import candidate_log_frequency, full_softmax, sampled_softmax
from trainer.gnn.optim import Optimizer, RowWiseAdagrad
from trainer.gnn.sampled import loader_workers
from trainer.io import checkpoint, checksum, embeddings, run_dir
from trainer.io.catalogue import load_catalogue
from trainer.train import train_from_args

SMALL = ["--hidden=16", "--id_dim=8", "--fanout=5,5,3", "--batch_size=64", "--device=cpu", "--val_rank_playlists=20"]
SAMPLED = [*SMALL, "--propagation=sampled"]
PROPAGATIONS = pytest.mark.parametrize("mode", [SMALL, SAMPLED], ids=["full", "sampled"])


@pytest.fixture(scope="module")
def gdir(tmp_path_factory):
    return toy_graph_dir(str(tmp_path_factory.mktemp("g") / "graph"), 150, seed=5)


def _params(run_dir):
    return checkpoint.load(checkpoint.checkpoint_path(str(run_dir)))["model"]


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"parameter {k} differs"


@PROPAGATIONS
def test_outputs_and_checkpoint_loads_without_code(gdir, tmp_path, mode):
    run = tmp_path / "run"
    result = train_from_args(["--graph", gdir, "--out", str(run), "--epochs=2", "--max_steps_per_epoch=3", *mode])
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [0, 1]
    for r in lines:
        assert {
            "epoch",
            "train_loss",
            "val_loss",
            "val_auc",
            "val_r_precision",
            "val_ndcg",
            "val_clicks",
            "best_epoch",
            "seconds",
            "edges_per_s",
            "data_fraction",
        } <= set(r)
        assert r["steps"] == 3 and 0 <= r["val_auc"] <= 1 and 0 <= r["data_fraction"] <= 1
        assert 0 <= r["val_r_precision"] <= 1 and 0 <= r["val_ndcg"] <= 1 and 0 <= r["val_clicks"] <= 51
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((run / "config.json").read_text())["hidden"] == 16
    manifest = json.loads(open(os.path.join(gdir, contract.MANIFEST)).read())
    recorded = json.loads((run / "graph.json").read_text())
    assert (recorded["graph"], recorded["created_at"], recorded["counts"]) == (
        gdir,
        manifest["created_at"],
        manifest["counts"],
    )
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)  # no pickled code
    assert state["epoch"] == 2 and state["step"] == 0 and state["global_step"] == 6 == result.global_step
    assert {"torch", "numpy", "python"} <= set(state["rng"])


@PROPAGATIONS
def test_resume_after_an_epoch_equals_uninterrupted(gdir, tmp_path, mode):
    args = ["--graph", gdir, "--max_steps_per_epoch=3", *mode]
    train_from_args([*args, "--out", str(tmp_path / "straight"), "--epochs=2"])
    train_from_args([*args, "--out", str(tmp_path / "stopped"), "--epochs=1"])
    train_from_args([*args, "--out", str(tmp_path / "stopped"), "--epochs=2", "--resume"])
    _assert_same(_params(tmp_path / "straight"), _params(tmp_path / "stopped"))
    a = [json.loads(x) for x in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (tmp_path / "stopped" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["train_loss"], r["val_loss"]) for r in a] == [
        (r["epoch"], r["train_loss"], r["val_loss"]) for r in b
    ]


@pytest.mark.parametrize(
    "mode, module", [(SMALL, full_graph_module), (SAMPLED, sampled_module)], ids=["full", "sampled"]
)
def test_resume_after_a_crash_mid_epoch_equals_uninterrupted(gdir, tmp_path, monkeypatch, mode, module):
    args = ["--graph", gdir, "--max_steps_per_epoch=5", "--epochs=1", "--checkpoint_every=2", *mode]
    train_from_args([*args, "--out", str(tmp_path / "straight")])

    real, calls = module.batch_loss, []

    def crash_on_fourth_step(*a, **k):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("simulated crash")
        return real(*a, **k)

    monkeypatch.setattr(module, "batch_loss", crash_on_fourth_step)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_from_args([*args, "--out", str(tmp_path / "crashed")])
    assert checkpoint.load(checkpoint.checkpoint_path(str(tmp_path / "crashed")))["step"] == 2
    monkeypatch.setattr(module, "batch_loss", real)
    train_from_args([*args, "--out", str(tmp_path / "crashed"), "--resume"])
    _assert_same(_params(tmp_path / "straight"), _params(tmp_path / "crashed"))


def _rewrite(graph: str, table: str, change) -> None:
    """Replace a table of a graph dir with ``change(table)``, as one file, and its manifest count."""
    t = change(pq.read_table(os.path.join(graph, table)))
    shutil.rmtree(os.path.join(graph, table))
    os.makedirs(os.path.join(graph, table))
    pq.write_table(t, os.path.join(graph, table, "part-0.parquet"))
    with open(os.path.join(graph, contract.MANIFEST)) as f:
        manifest = json.load(f)
    manifest["counts"][table] = t.num_rows
    with open(os.path.join(graph, contract.MANIFEST), "w") as f:
        json.dump(manifest, f)


@PROPAGATIONS
def test_tracks_only_hidden_edges_hold_stay_out_of_training(tmp_path, mode):
    """What is held out reaches no trained parameter: the same seed trains the same model (and
    optimiser state) when the held-out playlists' hidden edges change and when the tracks only
    hidden edges hold move to other albums and artists (they leave message passing, as in the
    ETL's features)."""
    a = toy_graph_dir(str(tmp_path / "a"), 200, seed=2, holdout=0.1, tracks_per_genre=120, hidden_only=3)
    b = str(tmp_path / "b")
    shutil.copytree(a, b)
    visible = pc.is_in(_read(a, "edges/playlist_track")["role"], pa.array(list(contract.VISIBLE_ROLES)))
    seen = set(_read(a, "edges/playlist_track").filter(visible)["track_id"].to_pylist())
    hidden_only = [t for t in range(len(_read(a, "nodes/track"))) if t not in seen]
    assert len(hidden_only) >= 3  # the planted ones, and generated tracks only held-out playlists hold
    # b: every other hidden edge gone (val's and test's), and the hidden-only tracks on other
    # albums and artists.
    hidden = pc.equal(_read(a, "edges/playlist_track")["role"], contract.ROLE_HIDDEN).to_pylist()
    drop = [h and i % 2 == 0 for i, h in enumerate(hidden)]
    _rewrite(b, "edges/playlist_track", lambda t: t.filter(pa.array([not d for d in drop])))
    for kind in ("album", "artist"):
        column = f"{kind}_id"

        def move(t, column=column):
            ids = t[column].to_numpy().copy()
            moved = np.isin(t["track_id"].to_numpy(), hidden_only)
            ids[moved] = (ids[moved] + 1) % (ids.max() + 1)
            return t.set_column(t.schema.get_field_index(column), column, pa.array(ids))

        _rewrite(b, f"edges/track_{kind}", move)
    args = ["--epochs=2", "--max_steps_per_epoch=3", *mode, "--val_rank_playlists=0"]
    for graph, out in ((a, "ra"), (b, "rb")):
        train_from_args(["--graph", graph, "--out", str(tmp_path / out), *args])
    ra, rb = (checkpoint.load(checkpoint.checkpoint_path(str(tmp_path / r))) for r in ("ra", "rb"))
    _assert_same(ra["model"], rb["model"])
    assert torch.equal(
        torch.cat([v.flatten() for v in _tensors(ra["optimizer"])]),
        torch.cat([v.flatten() for v in _tensors(rb["optimizer"])]),
    )


def _read(graph: str, table: str):
    return pq.read_table(os.path.join(graph, table))


def _tensors(state) -> list[torch.Tensor]:
    """Every tensor of a nested optimiser state, in order."""
    if isinstance(state, torch.Tensor):
        return [state.float()]
    if isinstance(state, dict):
        return [t for k in sorted(state, key=str) for t in _tensors(state[k])]
    if isinstance(state, (list, tuple)):
        return [t for v in state for t in _tensors(v)]
    return []


def test_resume_refuses_a_changed_config(gdir, tmp_path):
    args = ["--graph", gdir, "--max_steps_per_epoch=1", "--epochs=1", *SMALL]
    train_from_args([*args, "--out", str(tmp_path / "r")])
    with pytest.raises(ConfigError, match=r"config differs from the checkpoint in \['lr'\]"):
        train_from_args([*args, "--out", str(tmp_path / "r"), "--lr=0.1", "--resume"])


@pytest.mark.skipif(not os.path.exists(MPD_SAMPLE), reason="../shared/data (real MPD sample) absent")
def test_training_on_the_real_sample_lowers_the_loss(tmp_path):
    gdir = sample_graph_dir(str(tmp_path / "graph"))
    train_from_args(
        [
            "--graph",
            gdir,
            "--out",
            str(tmp_path / "run"),
            "--epochs=6",
            "--lr=0.01",
            "--supervision_ratio=0.5",
            "--batch_size=128",
            "--device=cpu",
            "--hidden=32",
            "--id_dim=16",
        ]
    )
    losses = [json.loads(x)["train_loss"] for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert losses[-1] < 0.9 * losses[0], losses


def test_fsspec_urls_and_embedding_export(gdir, tmp_path):
    import numpy as np
    import pyarrow.parquet as pq

    from trainer.embed import main as embed_main

    run = "file://" + str(tmp_path / "run")
    train_from_args(["--graph", "file://" + gdir, "--out", run, "--epochs=1", "--max_steps_per_epoch=1", *SMALL])
    embed_main(["--graph", gdir, "--run", run, "--batch-size", "50"])
    for t, key in (("track", "track_uri"), ("playlist", "pid")):
        table = embeddings.read(run, t)
        ids, keys, emb = table[f"{t}_id"].to_numpy(), table[key].to_pylist(), embeddings.matrix(table["embedding"])
        nodes = pq.read_table(f"{gdir}/nodes/{t}").to_pandas().sort_values(f"{t}_id")
        assert ids.tolist() == list(range(len(nodes)))
        assert keys == nodes[key].tolist()
        assert emb.shape == (len(nodes), 16 + 1)  # hidden + the track bias column
        assert emb.dtype == np.float32 and np.isfinite(emb).all()
    assert embeddings.identity(run)["track_bias"] is True  # the seed cosines of the ranker leave it out


def test_embedding_refuses_another_graph(gdir, tmp_path, capsys):
    from trainer.embed import main as embed_main

    train_from_args(["--graph", gdir, "--out", str(tmp_path / "run"), "--epochs=1", "--max_steps_per_epoch=1", *SMALL])
    other = toy_graph_dir(str(tmp_path / "other"), 60, seed=9)
    capsys.readouterr()  # the training's progress bars
    assert embed_main(["--graph", other, "--run", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.match(r"error: .*was trained on graph .* not on .*other", err[0])


@pytest.mark.parametrize(
    "extra", [[], ["--layer_mean=false"], ["--temperature=0"], ["--track_bias=false"], ["--playlist_ids=true"]]
)
def test_seed_query_embeds_a_playlist_as_the_model_does(gdir, tmp_path, extra):
    """recommend --tracks / submit build a playlist from seed tracks; given the playlist's own
    input projection, that vector equals the exported embedding of the graph playlist with
    exactly those (visible) tracks."""
    import numpy as np
    import torch

    from trainer.embed import main as embed_main
    from trainer.evaluation.scoring import EmbeddingScorer
    from trainer.gnn.inference import load_trained
    from trainer.io.graph import load_graph

    run = str(tmp_path / "run")
    train_from_args(["--graph", gdir, "--out", run, "--epochs=1", "--max_steps_per_epoch=2", *SMALL, *extra])
    embed_main(["--graph", gdir, "--run", run])
    cat = load_catalogue(gdir)
    query = embeddings.seed_query(run, cat)
    assert query is not None and query["track_seed"].shape[0] == cat.num_tracks
    scorer = EmbeddingScorer(embeddings.track_embeddings(run, cat), None, "cpu", query)
    playlists = embeddings.playlist_embeddings(run, cat)
    graph = load_graph(gdir)
    model, _, _ = load_trained(run, graph)
    visible = graph.visible_edges
    checked = 0
    for p in torch.unique(visible[0])[:25].tolist():
        seeds = visible[1][visible[0] == p].numpy()
        with torch.no_grad():
            h0 = model.input_embeddings({"playlist": graph.x["playlist"][p : p + 1]}, {"playlist": torch.tensor([p])})[
                "playlist"
            ][0]
        np.testing.assert_allclose(scorer.from_seeds(seeds, h0).numpy(), playlists[p], rtol=1e-4, atol=1e-5)
        checked += 1
    assert checked == 25
    # an outside playlist (no h0 given) is still a proper query: finite, and not the plain mean
    v = scorer.from_seeds(seeds)
    assert torch.isfinite(v).all()
    assert not np.allclose(v.numpy(), embeddings.track_embeddings(run, cat)[seeds].mean(0))


def test_fold_in_fits_a_new_playlist_to_its_seeds(gdir, tmp_path):
    """fold_in_steps > 0: the seed-built query ranks its own seeds more likely than the average
    playlist's projection does (the objective it descends), stays a readout of the model's
    form (unit direction / sqrt(temperature), then the bias column), and 0 steps changes nothing."""
    import numpy as np
    import torch

    from trainer.embed import main as embed_main
    from trainer.evaluation.scoring import EmbeddingScorer

    run = str(tmp_path / "run")
    train_from_args(["--graph", gdir, "--out", run, "--epochs=1", "--max_steps_per_epoch=2", *SMALL])
    embed_main(["--graph", gdir, "--run", run])
    cat = load_catalogue(gdir)
    query, tracks = embeddings.seed_query(run, cat), embeddings.track_embeddings(run, cat)
    plain = EmbeddingScorer(tracks, None, "cpu", query)
    folded = EmbeddingScorer(tracks, None, "cpu", query, fold_in_steps=30)
    seeds = np.array([3, 17, 40, 41])
    assert torch.equal(
        EmbeddingScorer(tracks, None, "cpu", query, fold_in_steps=0).from_seeds(seeds), plain.from_seeds(seeds)
    )

    def seed_likelihood(v):
        return torch.log_softmax(torch.from_numpy(tracks) @ v, 0)[seeds].mean().item()

    v = folded.from_seeds(seeds)
    assert seed_likelihood(v) > seed_likelihood(plain.from_seeds(seeds)) + 0.1
    assert v[-1].item() == 1.0  # the bias column
    assert torch.allclose(v[:-1].norm(), torch.tensor(query["temperature"] ** -0.5), rtol=1e-5)
    with pytest.raises(ValueError, match="fold-in steps must be >= 0"):
        EmbeddingScorer(tracks, None, "cpu", query, fold_in_steps=-1)


def test_sage_runs_have_no_seed_query(gdir, tmp_path):
    from trainer.embed import main as embed_main

    run = str(tmp_path / "run")
    train_from_args(["--graph", gdir, "--out", run, "--epochs=1", "--max_steps_per_epoch=1", *SAMPLED, "--conv=sage"])
    embed_main(["--graph", gdir, "--run", run])
    assert embeddings.seed_query(run, load_catalogue(gdir)) is None


def test_sampled_softmax_ranks_each_positive_against_the_batch_tracks_but_its_playlists_positives():
    """Logits are corrected by each candidate's log frequency; a playlist's other positives in
    the batch are not its negatives."""
    g = torch.Generator().manual_seed(0)
    src_of = torch.randn(4, 8, generator=g)  # 4 playlists in the batch
    h_track = torch.randn(30, 8, generator=g)
    playlist = torch.tensor([0, 1, 0, 2, 3, 1])  # playlists 0 and 1 have two positives
    positive = torch.tensor([5, 7, 9, 7, 2, 11])  # track 7 is a positive of two playlists
    negative = torch.randint(12, 30, (6, 3), generator=g)
    src = src_of[playlist]
    log_frequency = torch.rand(30, generator=g)
    loss = sampled_softmax(src, h_track, playlist, positive, negative, log_frequency)

    candidates = sorted(set(positive.tolist()) | set(negative.flatten().tolist()))
    expected = []
    for i in range(len(positive)):
        own = {int(positive[j]) for j in range(len(positive)) if playlist[j] == playlist[i]} - {int(positive[i])}
        columns = [c for c in candidates if c not in own]  # the target stays, its siblings go
        logits = torch.stack([src[i] @ h_track[c] - log_frequency[c] for c in columns])
        expected.append(torch.logsumexp(logits, 0) - (src[i] @ h_track[positive[i]] - log_frequency[positive[i]]))
    assert torch.allclose(loss, torch.stack(expected).mean(), atol=1e-5)


def test_full_softmax_ranks_each_positive_against_the_whole_catalogue_but_its_playlists_positives():
    """An independent loop over every track; siblings (the playlist's other positives in the
    batch) leave its row, the target stays; no frequency correction (every track is a candidate)."""
    g = torch.Generator().manual_seed(1)
    src_of = torch.randn(4, 8, generator=g)
    h_track = torch.randn(25, 8, generator=g)
    playlist = torch.tensor([0, 1, 0, 2, 3, 1, 0])
    positive = torch.tensor([5, 7, 9, 7, 2, 11, 5])  # playlist 0 holds track 5 twice
    src = src_of[playlist]
    loss = full_softmax(src, h_track, playlist, positive)
    expected = []
    for i in range(len(positive)):
        own = {int(positive[j]) for j in range(len(positive)) if playlist[j] == playlist[i]} - {int(positive[i])}
        logits = torch.stack([src[i] @ h_track[c] for c in range(25) if c not in own])
        expected.append(torch.logsumexp(logits, 0) - src[i] @ h_track[positive[i]])
    assert torch.allclose(loss, torch.stack(expected).mean(), atol=1e-5)


def test_full_softmax_needs_full_propagation():
    with pytest.raises(ConfigError, match="full_softmax needs propagation=full"):
        TrainConfig(loss="full_softmax", conv="sage")


@pytest.mark.parametrize(
    "extra",
    [[*SMALL, "--loss=full_softmax"], [*SMALL, "--supervise_seeds=true"], [*SAMPLED, "--supervise_seeds=true"]],
    ids=["full_softmax", "full+seeds", "sampled+seeds"],
)
def test_loss_options_train(gdir, tmp_path, extra):
    train_from_args(["--graph", gdir, "--out", str(tmp_path / "run"), *extra, "--epochs=2"])
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["train_loss"] < records[0]["train_loss"], records


@PROPAGATIONS
def test_softmax_loss_trains(gdir, tmp_path, mode):
    train_from_args(["--graph", gdir, "--out", str(tmp_path / "run"), *mode, "--epochs=2", "--loss=softmax"])
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["train_loss"] < records[0]["train_loss"], records


@pytest.mark.parametrize("power", [0.0, 0.5])
def test_candidate_frequency_counts_a_batchs_positives_and_negatives(gdir, power):
    from trainer.config import TrainConfig
    from trainer.io.graph import load_graph

    graph = load_graph(gdir)
    config = TrainConfig(batch_size=64, negatives=5, negative_power=power)
    expected = (
        candidate_log_frequency(
            graph.train_edges, graph.num_nodes["track"], config.batch_size, config.negatives, config.negative_power
        )
        .double()
        .exp()
    )
    assert expected.shape == (graph.num_nodes["track"],)
    assert expected.sum().item() == pytest.approx(64 * (1 + 5))  # B positives + B*K negatives
    degree = torch.bincount(graph.train_edges[1], minlength=graph.num_nodes["track"])
    hub, unseen = int(degree.argmax()), int(degree.argmin())
    assert expected[hub] > expected[unseen] > 0  # drawn as a positive by degree; any track as a negative


def _python_out(code: str, *args: str, env_drop: str, env_set: dict | None = None) -> list[str]:
    """What a fresh interpreter running ``code`` prints (split), without ``env_drop`` in its
    environment (an allocator setting is read once, at start-up) and with ``env_set``."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != env_drop}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env.update(PYTHONPATH=root, **(env_set or {}))
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=env, cwd=root, capture_output=True, text=True, check=True
    ).stdout.split()


_COUNT_HEAPS = """
import ctypes, sys, threading
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.open_memstream.restype = ctypes.c_void_p

def heaps():
    buf, size = ctypes.c_char_p(), ctypes.c_size_t()
    f = ctypes.c_void_p(libc.open_memstream(ctypes.byref(buf), ctypes.byref(size)))
    libc.malloc_info(0, f)
    libc.fclose(f)
    return buf.value.decode().count("<heap nr=")

from trainer.process import cap_malloc_arenas
before = heaps()
capped = cap_malloc_arenas(int(sys.argv[1]))
barrier = threading.Barrier(4)

def allocate():  # four threads allocating at once: each wants an arena of its own
    for _ in range(100):
        libc.malloc(4096)
    barrier.wait()

threads = [threading.Thread(target=allocate) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(capped, before, heaps())
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's arenas")
def test_malloc_arena_cap_keeps_new_threads_out_of_new_heaps():
    def heaps(arenas, env_set=None):
        out = _python_out(_COUNT_HEAPS, str(arenas), env_drop="MALLOC_ARENA_MAX", env_set=env_set)
        return out[0] == "True", int(out[1]), int(out[2])

    capped, before, after = heaps(0)  # glibc's default: a new heap per new thread
    assert not capped and after >= before + 3
    capped, before, after = heaps(1)  # no new heap (imports may have made one before the cap)
    assert capped and after == before
    # the user's own setting wins, and is not overridden
    capped, before, after = heaps(4, {"MALLOC_ARENA_MAX": "1"})
    assert not capped and after == before == 1


_MAPPED_AFTER_BIG_FREE = """
import ctypes, sys
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
from trainer.process import fix_mmap_threshold
fixed = fix_mmap_threshold() if sys.argv[1] == "fix" else False
libc.free(libc.malloc(30 << 20))  # glibc's dynamic threshold rises to 30 MiB here
p = libc.malloc(4 << 20)
mapped = bool(ctypes.c_size_t.from_address(p - ctypes.sizeof(ctypes.c_size_t)).value & 2)  # IS_MMAPPED
print(fixed, mapped)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mmap threshold")
def test_fixed_mmap_threshold_keeps_mid_sized_buffers_out_of_the_heap():
    def run(mode, env_set=None):
        out = _python_out(_MAPPED_AFTER_BIG_FREE, mode, env_drop="MALLOC_MMAP_THRESHOLD_", env_set=env_set)
        return out[0] == "True", out[1] == "True"

    assert run("default") == (False, False)  # a 4 MiB block comes from the heap, where holes stay
    assert run("fix") == (True, True)  # its own mapping, returned to the OS when freed
    assert run("fix", {"MALLOC_MMAP_THRESHOLD_": str(64 << 20)}) == (False, False)  # the user's own setting wins


def _huge_pages_on_request() -> bool:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return "[madvise]" in f.read()  # ("always": every process gets them; "never": none does)
    except OSError:
        return False


@pytest.mark.parametrize("setting", [None, "0"])
def test_a_command_asks_torch_for_huge_pages_before_importing_it_unless_the_user_said(setting):
    if not _huge_pages_on_request():  # elsewhere every process gets them, or none does
        pytest.skip("transparent huge pages are not 'madvise' here: asking for them changes nothing to see")
    code = (
        "import os, trainer.train, torch; x = torch.ones(1 << 25); "
        "print(os.environ['THP_MEM_ALLOC_ENABLE'], "
        "[int(l.split()[1]) for l in open('/proc/self/smaps_rollup') if l.startswith('AnonHugePages')][0])"
    )
    out = _python_out(
        code, env_drop="THP_MEM_ALLOC_ENABLE", env_set=None if setting is None else {"THP_MEM_ALLOC_ENABLE": setting}
    )
    assert out[0] == (setting or "1")
    # the 128 MiB tensor sits on huge pages only when asked for
    assert (int(out[1]) >= 64 << 10) == (setting is None)


def test_importing_the_package_sets_up_nothing():
    out = _python_out(
        "import os, trainer; print('THP_MEM_ALLOC_ENABLE' in os.environ)", env_drop="THP_MEM_ALLOC_ENABLE"
    )
    assert out == ["False"]


@pytest.mark.parametrize(
    "cores, ranks, device, expected",
    [
        (2, 1, "cpu", 1),
        (2, 2, "cpu", 0),
        (1, 1, "cpu", 0),
        (16, 2, "cpu", 1),
        (16, 1, "cuda", 15),
        (16, 2, "cuda", 7),
        (64, 1, "cuda", 16),
        (1, 1, "cuda", 1),
    ],
)
def test_auto_loader_workers_follow_cores_per_rank_and_device(monkeypatch, cores, ranks, device, expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(cores)))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(ranks))
    # PyG's sampler, which runs in the workers (sampler=device on CUDA takes none: test_neighbor_sampler.py)
    assert loader_workers(TrainConfig(sampler="torch_sparse"), torch.device(device)) == expected
    assert loader_workers(TrainConfig(sampler="torch_sparse", num_workers=3), torch.device(device)) == 3


def test_rowwise_adagrad_against_hand_computation_sparse_and_dense():
    torch.manual_seed(0)
    start = torch.randn(6, 3)
    sparse, dense = torch.nn.Embedding(6, 3, sparse=True), torch.nn.Embedding(6, 3)
    for m in (sparse, dense):
        m.weight.data.copy_(start)
    opts = [RowWiseAdagrad(m.parameters(), lr=0.5) for m in (sparse, dense)]
    expected, acc = start.clone(), torch.zeros(6)
    for idx in (torch.tensor([1, 4, 4]), torch.tensor([4, 0])):
        grad = torch.zeros(6, 3)
        grad.index_add_(0, idx, 2 * expected[idx])  # d/dw of sum(w[idx] ** 2), repeats summed
        touched = grad.abs().sum(1) > 0
        acc += grad.pow(2).mean(1)
        expected[touched] -= 0.5 * grad[touched] / (acc[touched].sqrt() + 1e-10).unsqueeze(1)
        for m, opt in zip((sparse, dense), opts):
            opt.zero_grad()
            (m(idx) ** 2).sum().backward()
            opt.step()
    for m, opt in zip((sparse, dense), opts):
        torch.testing.assert_close(m.weight.detach(), expected)
        assert torch.equal(m.weight.detach()[[2, 3, 5]], start[[2, 3, 5]])  # never touched
        assert opt.state[m.weight]["sum"].shape == (6,)  # one float of state per row


@pytest.mark.parametrize(
    "name, sparse, parts",
    [
        ("adam", True, {"sparse", "dense"}),
        ("adam", False, {"dense"}),
        ("rowwise_adagrad", True, {"rowwise", "dense"}),
        ("rowwise_adagrad", False, {"rowwise", "dense"}),
    ],
)
def test_optimizer_parts_follow_config(gdir, name, sparse, parts):
    from trainer.gnn.model import build_model
    from trainer.io.graph import load_graph

    config = TrainConfig(hidden=16, id_dim=8, embedding_optimizer=name, embedding_lr=0.3)
    graph = load_graph(gdir)
    model = build_model(config, graph.metadata(), {t: x.size(1) for t, x in graph.x.items()}, graph.num_nodes, sparse)
    opt = Optimizer(model, config, sparse)
    assert set(opt.parts) == parts
    embedding_lrs = [
        g["lr"]
        for o in opt.parts.values()
        for g in o.param_groups
        if any(p is model.embedding["track"].weight for p in g["params"])
    ]
    assert embedding_lrs == [0.3]


def test_a_run_dir_holding_a_run_is_refused_unless_resume_or_overwrite(gdir, tmp_path):
    """Training into a finished run's dir must not silently replace its checkpoint and metrics."""
    args = ["--graph", gdir, "--max_steps_per_epoch=1", *SMALL]
    run = tmp_path / "run"
    train_from_args([*args, "--out", str(run), "--epochs=2"])
    before = (run / "checkpoints" / "last.pt").read_bytes()
    other = toy_graph_dir(str(tmp_path / "other"), 60, seed=9)
    with pytest.raises(
        run_dir.RunExistsError,
        match=rf"run dir {run} already holds a run \(checkpoints/last.pt, metrics.jsonl\); "
        r"pass --resume to continue it, --overwrite to discard it",
    ):
        train_from_args(["--graph", other, *args[2:], "--out", str(run), "--epochs=1"])
    assert (run / "checkpoints" / "last.pt").read_bytes() == before
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    assert json.loads((run / "graph.json").read_text())["graph"] == gdir
    with pytest.raises(run_dir.RunExistsError, match="--resume and --overwrite exclude each other"):
        train_from_args([*args, "--out", str(run), "--epochs=2", "--resume", "--overwrite"])

    (run / "eval_val.json").write_text("{}")  # the old run's evaluation goes with it
    (run / "notes.txt").write_text("mine")  # a file the trainer did not write stays
    train_from_args(["--graph", other, *args[2:], "--out", str(run), "--epochs=1", "--overwrite"])
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    assert json.loads((run / "graph.json").read_text())["graph"] == other
    assert not (run / "eval_val.json").exists() and (run / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("damage", ["truncated", "garbage", "random bytes", "pickled code", "one flipped byte"])
def test_resume_from_a_damaged_checkpoint_names_the_file_without_a_traceback(gdir, tmp_path, damage):
    import io
    import subprocess
    import sys

    args = ["--graph", gdir, "--max_steps_per_epoch=1", "--epochs=1", *SMALL]
    run = tmp_path / "run"
    train_from_args([*args, "--out", str(run)])
    last = run / "checkpoints" / "last.pt"
    data = last.read_bytes()
    code = io.BytesIO()
    torch.save({"model": platform.uname}, code)  # a real checkpoint archive that pickles a function
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF  # inside a tensor's bytes: torch.load alone reads them without complaint
    last.write_bytes(
        {
            "truncated": data[: len(data) // 2],
            "garbage": b"not a checkpoint " * 20,
            "random bytes": np.random.default_rng(0).bytes(4096),
            "pickled code": code.getvalue(),
            "one flipped byte": bytes(flipped),
        }[damage]
    )
    reason = {
        "truncated": "",
        "garbage": "not a zip archive",
        "random bytes": "not a zip archive",
        "pickled code": "could run code",
        "one flipped byte": "SHA-256",
    }[damage]
    with pytest.raises(
        checkpoint.DamagedCheckpoint, match=rf"{last} is damaged.*{reason}.* restore it from a copy, or start afresh"
    ):
        train_from_args([*args, "--out", str(run), "--epochs=2", "--resume"])
    if damage == "pickled code":  # and on the command line: one line, no advice to unpickle
        proc = subprocess.run(
            [sys.executable, "-m", "trainer.train", *args, "--out", str(run), "--epochs=2", "--resume"],
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert f"error: checkpoint {last} is damaged" in proc.stderr
        assert "weights_only=False" not in proc.stderr and "could run code" in proc.stderr


def test_a_checkpoint_without_its_checksum_record_resumes_with_a_warning(gdir, tmp_path, caplog):
    """Checkpoints from before the record, or a run cut between the checkpoint and its record (the
    record then names another checkpoint): read unchecked, said so."""
    args = ["--graph", gdir, "--max_steps_per_epoch=1", *SMALL, "--out", str(tmp_path / "run")]
    train_from_args([*args, "--epochs=1"])
    record = tmp_path / "run" / "checkpoints" / "last.pt.sha256.json"
    assert json.loads(record.read_text())["sha256"] == checksum.sha256(str(record)[: -len(".sha256.json")])
    record.write_text(json.dumps({"checkpoint_id": "another", "sha256": "0" * 64}))
    with caplog.at_level("WARNING"):
        train_from_args([*args, "--epochs=2", "--resume"])
    assert "records checkpoint another" in caplog.text and "read unchecked" in caplog.text
    assert json.loads(record.read_text())["checkpoint_id"] != "another"  # the next checkpoint wrote its own
    record.unlink()
    caplog.clear()
    with caplog.at_level("WARNING"):
        train_from_args([*args, "--epochs=3", "--resume"])
    assert "has no recorded checksum (written by an earlier version): read unchecked" in caplog.text


def test_divergence_stops_the_run_by_name_and_saves_nothing_diverged(gdir, tmp_path):
    """lr=1e30 overflows within the first epoch: the run stops with a named error (exit 2 on the
    command line), no diverged epoch is selected, checkpointed or exported."""
    import subprocess
    import sys

    run = tmp_path / "run"
    args = [
        "--graph",
        gdir,
        "--out",
        str(run),
        "--epochs=3",
        "--max_steps_per_epoch=3",
        "--lr=1e30",
        "--embedding_lr=1e30",
        *SMALL,
    ]
    with pytest.raises(TrainingDiverged, match=r"(nan|inf|not finite).* training diverged; lower the learning rates"):
        train_from_args(args)
    assert not (run / "checkpoints" / "best.pt").exists() and not (run / "checkpoints" / "last.pt").exists()
    proc = subprocess.run(
        [sys.executable, "-m", "trainer.train", *args, "--overwrite"],
        capture_output=True,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        timeout=300,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "training diverged" in proc.stderr


def test_a_run_dir_in_use_is_refused_and_a_dead_holders_lock_is_taken_over(gdir, tmp_path):
    import socket

    from trainer.io import storage

    run = tmp_path / "run"
    args = ["--graph", gdir, "--out", str(run), "--epochs=1", "--max_steps_per_epoch=1", *SMALL]
    with storage.exclusive(str(run), "run dir", "trainer.train --out elsewhere"):  # a live trainer
        with pytest.raises(
            storage.Locked,
            match=rf"run dir {run} is in use: trainer.train --out elsewhere "
            rf"\(pid {os.getpid()} on .*\) writes there",
        ):
            train_from_args(args)
    assert not (run / "checkpoints").exists()  # the refused trainer wrote nothing
    dead = {"pid": 2**22 + 1, "host": socket.gethostname(), "since": "then", "command": "killed"}
    (run / ".lock").write_text(json.dumps(dead))
    train_from_args(args)
    assert (run / "checkpoints" / "last.pt").exists() and not (run / ".lock").exists()


def test_what_a_killed_writer_left_is_removed_by_the_next_run_that_holds_the_lock(gdir, tmp_path, caplog):
    """kill -9 while a checkpoint is written and embeddings are staged leaves both temporaries;
    the next command that holds the run dir's lock removes them, saying so, and keeps a live
    writer's."""
    import socket
    import subprocess
    import sys

    run = tmp_path / "run"
    args = ["--graph", gdir, "--out", str(run), "--max_steps_per_epoch=1", *SMALL]
    train_from_args([*args, "--epochs=1"])
    killed = f"""
import os
from trainer.io import storage
def write(staging):
    storage.atomic_write_bytes(storage.join(staging, "part.bin"), b"x")
    with storage.atomic_open({str(run / "checkpoints" / "last.pt")!r}) as f:
        f.write(b"half a checkpoint")
        os.kill(os.getpid(), 9)
storage.publish_dir({str(run)!r}, "embeddings", write)
"""
    assert subprocess.run([sys.executable, "-c", killed]).returncode == -9

    def temporaries():
        return sorted(str(p.relative_to(run)) for p in run.rglob("*") if ".tmp" in p.name)

    assert [re.sub(r"-\d+(-[0-9a-f]{8})?$", "", t) for t in temporaries()] == [
        f"checkpoints/last.pt.tmp.{socket.gethostname()}",
        f"embeddings.tmp-{socket.gethostname()}",
    ]
    live = run / f"eval_val.json.tmp.{socket.gethostname()}-{os.getpid()}"  # a writer still at work
    live.write_text("{")
    with caplog.at_level("WARNING"):
        train_from_args([*args, "--epochs=2", "--resume"])
    assert temporaries() == [live.name]
    assert f"removed 2 leftover(s) of writers killed in {run}" in caplog.text


def test_a_killed_writer_of_a_file_or_folder_is_swept_by_the_next_write_of_the_same(tmp_path, caplog):
    """evaluate and rerank write without the run dir's lock: what a kill -9 left beside their
    outputs goes at the next write of the same output, saying so; a live writer's and another
    output's stay (the next locked command takes the latter)."""
    import socket
    import subprocess
    import sys

    from trainer.io import storage

    run, host = tmp_path / "run", socket.gethostname()
    run.mkdir()
    killed = f"""
import os
from trainer.io import storage
def write(staging):
    storage.atomic_write_bytes(storage.join(staging, "model.txt"), b"half")
    os.kill(os.getpid(), 9)
if os.environ["WHAT"] == "file":
    with storage.atomic_open({str(run / "eval_test.json")!r}) as f:
        f.write(b"{{")
        os.kill(os.getpid(), 9)
storage.publish_dir({str(run)!r}, os.environ["WHAT"], write)
"""
    for what in ("file", "reranker", "embeddings"):
        assert subprocess.run([sys.executable, "-c", killed], env={**os.environ, "WHAT": what}).returncode == -9
    live = run / f"reranker.tmp-{host}-{os.getpid()}-0123abcd"
    live.mkdir()

    def temporaries():
        return sorted(re.sub(r"-\d+(-[0-9a-f]{8})?$", "", p.name) for p in run.iterdir() if ".tmp" in p.name)

    assert temporaries() == [
        f"embeddings.tmp-{host}",
        f"eval_test.json.tmp.{host}",
        f"reranker.tmp-{host}",
        f"reranker.tmp-{host}",
    ]
    with caplog.at_level("WARNING"):
        storage.atomic_write_json(str(run / "eval_test.json"), {})
        storage.publish_dir(
            str(run), "reranker", lambda s: storage.atomic_write_bytes(storage.join(s, "identity.json"), b"{}")
        )
    assert temporaries() == [f"embeddings.tmp-{host}", f"reranker.tmp-{host}"]
    assert live.exists() and (run / "reranker" / "identity.json").exists()
    assert caplog.text.count(f"removed 1 leftover(s) of writers killed in {run}") == 2


def test_an_out_under_a_file_is_named_before_any_work(gdir, tmp_path):
    from trainer.io import storage

    (tmp_path / "f").write_text("x")
    out = tmp_path / "f" / "run"
    with pytest.raises(storage.OutputError, match=rf"--out {out} cannot be written \(.*\); choose another place"):
        train_from_args(["--graph", gdir, "--out", str(out), "--epochs=1", *SMALL])


def test_embeddings_name_their_checkpoint_and_stale_or_partial_sets_are_refused(gdir, tmp_path, monkeypatch):
    """Embeddings carry the id of the checkpoint they came from: a run trained further makes them
    stale (refused by name until exported again), a set without its identity is incomplete, and
    an export that fails half way leaves the published set as it was."""
    from trainer.embed import main as embed_main
    from trainer.evaluate import evaluate

    run = str(tmp_path / "run")
    args = [
        "--graph",
        gdir,
        "--out",
        run,
        "--max_steps_per_epoch=2",
        *SMALL,
        "--val_rank_playlists=0",
    ]  # last.pt final: after SMALL's 20
    train_from_args([*args, "--epochs=1"])
    embed_main(["--graph", gdir, "--run", run])
    first = evaluate(gdir, run, "val", ["gnn"])
    assert first["gnn_checkpoint"]["checkpoint_id"] == checkpoint.identity(checkpoint.final(run))

    train_from_args([*args, "--epochs=2", "--resume"])  # last.pt, the final checkpoint here, moves on
    with pytest.raises(run_dir.RunMismatchError, match=r"came from checkpoint \w+ .* is now \w+ .*export again"):
        evaluate(gdir, run, "val", ["gnn"])

    real, calls = embeddings._write_table, []

    def killed_after_one_table(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as a kill between two tables
        return real(*a, **k)

    monkeypatch.setattr(embeddings, "_write_table", killed_after_one_table)
    assert embed_main(["--graph", gdir, "--run", run]) == 130  # Ctrl-C: one line, exit 130
    assert not [n for n in os.listdir(run) if n.startswith("embeddings.")]  # no half set beside the old one
    with pytest.raises(run_dir.RunMismatchError, match="is now"):  # the old set, still stale, still refused
        evaluate(gdir, run, "val", ["gnn"])
    monkeypatch.undo()

    embed_main(["--graph", gdir, "--run", run])
    second = evaluate(gdir, run, "val", ["gnn"])
    assert second["gnn_checkpoint"]["checkpoint_id"] != first["gnn_checkpoint"]["checkpoint_id"]

    track = embeddings.path(run, "track")  # a flipped byte in a vector: Parquet reads it without complaint
    original = open(track, "rb").read()
    flipped = bytearray(original)
    flipped[len(original) // 3] ^= 0x01
    open(track, "wb").write(bytes(flipped))
    with pytest.raises(checksum.Damaged, match=r"track.parquet is damaged: its SHA-256 .* export again"):
        evaluate(gdir, run, "val", ["gnn"])
    open(track, "wb").write(original)
    ident = embeddings.path(run, embeddings.IDENTITY)  # a set exported before the checksums: read, with a warning
    recorded = json.loads(open(ident).read())
    open(ident, "w").write(json.dumps({k: v for k, v in recorded.items() if k != "sha256"}))
    assert evaluate(gdir, run, "val", ["gnn"])["methods"]["gnn"] == second["methods"]["gnn"]
    os.remove(os.path.join(run, "embeddings", "identity.json"))
    with pytest.raises(run_dir.RunMismatchError, match="identity.json not found: .* is incomplete"):
        evaluate(gdir, run, "val", ["gnn"])


def test_a_batch_above_the_epochs_edges_is_cut_and_said(gdir, tmp_path, caplog):
    with caplog.at_level("WARNING", logger="trainer.regime"):
        result = train_from_args(
            ["--graph", gdir, "--out", str(tmp_path / "run"), "--epochs=1", *SMALL, "--batch_size=1000000"]
        )
    assert "batch_size=1000000 is above the" in caplog.text and "training with batches of at most" in caplog.text
    assert result.record["steps"] == 1
    assert json.loads((tmp_path / "run" / "config.json").read_text())["batch_size"] == 1000000  # as asked


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_cuda_is_one_line(gdir, tmp_path, capsys):
    from trainer.train import main

    assert main(["--graph", gdir, "--out", str(tmp_path / "run"), "--device=cuda"]) == 2
    assert "error: device=cuda but torch.cuda.is_available() is False" in capsys.readouterr().err


def test_a_full_disk_while_checkpointing_is_said_and_resume_recovers(gdir, tmp_path, monkeypatch):
    import errno

    from trainer.io import storage

    def full_disk(obj, f):  # what torch.save raises when the file's write hits ENOSPC
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    run = tmp_path / "run"
    args = ["--graph", gdir, "--out", str(run), "--epochs=1", "--max_steps_per_epoch=1", *SMALL]
    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(storage.OutputError, match=r"writing .*checkpoints/last.pt: no space left on device"):
        train_from_args(args)
    assert not (run / "checkpoints").exists() or not any((run / "checkpoints").iterdir())  # no temporary left
    monkeypatch.undo()
    train_from_args([*args, "--resume"])
    assert (run / "checkpoints" / "last.pt").exists()


def test_sigterm_checkpoints_after_the_step_and_resume_continues_exactly(gdir, tmp_path, monkeypatch):
    # SIGTERM (preemption, a time limit) mid-epoch: the step finishes, last.pt holds it, the
    # command exits 143 in one line; --resume then ends where an uninterrupted run ends.
    import signal

    from trainer.train import main

    args = ["--graph", gdir, "--epochs=2", "--max_steps_per_epoch=4", "--val_rank_playlists=0", *SMALL]
    real, calls = full_graph_module.batch_loss, []

    def terminated_at_the_sixth(*a, **k):  # epoch 1, step 1 of 4
        calls.append(1)
        if len(calls) == 6:  # one loss chunk a step
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*a, **k)

    monkeypatch.setattr(full_graph_module, "batch_loss", terminated_at_the_sixth)
    cut = tmp_path / "cut"
    assert main([*args, "--out", str(cut), "--loss_chunk=1000000"]) == 143
    monkeypatch.undo()
    saved = checkpoint.load(checkpoint.checkpoint_path(str(cut)))
    assert (saved["epoch"], saved["step"], saved["global_step"]) == (1, 2, 6)
    resumed = train_from_args([*args, "--out", str(cut), "--loss_chunk=1000000", "--resume"])
    again = train_from_args([*args, "--out", str(tmp_path / "whole2"), "--loss_chunk=1000000"])
    assert resumed.global_step == again.global_step == 8
    for k, v in again.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[k], v, msg=k)
