"""Full-catalogue evaluation: top-k, baselines and metrics against independent computations."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
import threading
from collections import Counter, defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from graphdir_fixture import MPD_SAMPLE, REPO_ROOT, sample_graph_dir, toy_graph_dir

from etl import contract
from trainer.evaluate import evaluate, main
from trainer.evaluation import baselines
from trainer.evaluation.baselines import ALSParams, ItemKNN, Popularity, popularity_counts
from trainer.evaluation.metrics import METRICS, playlist_metrics
from trainer.evaluation.protocol import held_out, score_sums, shard
from trainer.evaluation.scoring import Queries, top_k
from trainer.evaluation.title import TitleModel
from trainer.io import embeddings, run_dir
from trainer.io.catalogue import load_catalogue

needs_sample = pytest.mark.skipif(not os.path.exists(MPD_SAMPLE), reason=f"real MPD sample not found at {MPD_SAMPLE}")


def write_embeddings(
    run: str, graph_dir: str, tracks: np.ndarray, playlists: np.ndarray, track_bias: bool = False
) -> str:
    """A run dir holding embeddings alone (no checkpoint), published as trainer.embed publishes them;
    ``track_bias``: the track vectors' last column is a bias."""
    cat = load_catalogue(graph_dir)
    embeddings.publish(
        run,
        {
            "track": (np.arange(cat.num_tracks), list(cat.track_uri), tracks),
            "playlist": (np.arange(cat.num_playlists), cat.playlist_pid, playlists),
        },
        None,
        {
            "checkpoint": None,
            "checkpoint_id": None,
            **run_dir.graph_record(graph_dir, cat.manifest),
            "track_bias": track_bias,
        },
    )
    return run


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    if not os.path.exists(MPD_SAMPLE):
        pytest.skip(f"real MPD sample not found at {MPD_SAMPLE}")
    return sample_graph_dir(str(tmp_path_factory.mktemp("sample")), num_val=8, num_test=8)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return toy_graph_dir(str(tmp_path_factory.mktemp("synth")), 600, holdout=0.05, tracks_per_genre=200)


# --- top-k ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("chunk_size", [1000, 97, 13])
@pytest.mark.parametrize("with_allowed", [False, True])
def test_top_k_equals_full_sort_with_seeds_masked(chunk_size, with_allowed):
    rng = np.random.default_rng(1)
    scores = rng.standard_normal((7, 1000)).astype(np.float32)
    seeds = [rng.choice(1000, n, replace=False) for n in (0, 1, 5, 30, 100, 3, 999)]
    allowed = rng.random(1000) > 0.1 if with_allowed else None
    queries = Queries.from_lists(seeds, [""] * 7)
    t = torch.from_numpy(scores.copy())
    ids, _ = top_k(lambda a, b: t[:, a:b], queries, 1000, 50, chunk_size, allowed=allowed)
    assert np.array_equal(t.numpy(), scores)  # the scorer's own tensor is not written to
    for b in range(7):
        masked = scores[b].copy()
        masked[seeds[b]] = -np.inf
        if allowed is not None:
            masked[~allowed] = -np.inf
        want = np.argsort(-masked, kind="stable")[:50]
        want = np.where(np.isneginf(masked[want]), -1, want)  # row 6 has one track left
        np.testing.assert_array_equal(ids[b], want)


def test_top_k_pads_a_small_catalogue():
    t = torch.arange(6, dtype=torch.float32).expand(1, 6)
    ids, _ = top_k(lambda a, b: t[:, a:b], Queries.from_lists([np.array([5])], [""]), 6, 8, 4)
    assert ids.tolist() == [[4, 3, 2, 1, 0, -1, -1, -1]]


# --- baselines -----------------------------------------------------------------------------------
def _edges(graph_dir):
    t = pq.read_table(os.path.join(graph_dir, "edges/playlist_track")).to_pylist()
    split = {r["playlist_id"]: r["split"] for r in pq.read_table(os.path.join(graph_dir, "nodes/playlist")).to_pylist()}
    return t, split


@needs_sample
def test_popularity_counts_visible_edges_only(sample):
    edges, _ = _edges(sample)
    want = defaultdict(set)
    for e in edges:
        if e["role"] != contract.ROLE_HIDDEN:
            want[e["track_id"]].add(e["playlist_id"])
    cat = load_catalogue(sample)
    got = popularity_counts(cat.edges(contract.VISIBLE_ROLES))
    assert got.tolist() == [len(want[t]) for t in range(cat.num_tracks)]
    only_hidden = {e["track_id"] for e in edges if e["role"] == contract.ROLE_HIDDEN} - {
        t for t, ps in want.items() if ps
    }
    assert only_hidden and all(got[t] == 0 for t in only_hidden)


@needs_sample
@pytest.mark.parametrize("graph,gamma,neighbours", [("sample", 1.0, 0), ("sample", 2.0, 0), ("synth", 2.0, 20)])
def test_itemknn_equals_plain_python_co_occurrence(request, graph, gamma, neighbours):
    sample = request.getfixturevalue(graph)  # synth: enough shared seeds for the cut-off to bite
    edges, split = _edges(sample)
    train = defaultdict(set)
    for e in edges:
        if split[e["playlist_id"]] == contract.SPLIT_TRAIN:
            train[e["playlist_id"]].add(e["track_id"])
    df = Counter(t for tracks in train.values() for t in tracks)
    cat = load_catalogue(sample)
    held = held_out(cat, contract.SPLIT_VAL)
    pop = popularity_counts(cat.edges(contract.VISIBLE_ROLES))
    knn = ItemKNN(
        cat.edges((contract.ROLE_TRAIN,), (contract.SPLIT_TRAIN,)), pop, beta=0.5, gamma=gamma, neighbours=neighbours
    )
    chunk = knn.batch(held.queries)
    got = torch.cat([chunk(a, min(a + 50, cat.num_tracks)) for a in range(0, cat.num_tracks, 50)], 1)
    cut_rows = 0
    for b in range(len(held)):
        want = np.zeros(cat.num_tracks)
        idf = {s: np.log1p(len(train) / max(df[s], 1)) for s in held.queries.seeds(b)}
        if gamma == 1.0 and not neighbours:  # the item form: sum over seeds of idf(s) * co(s, t)
            for s in idf:
                for tracks in train.values():
                    if s in tracks:
                        for t in tracks:
                            want[t] += idf[s] / df[t] ** 0.5
        else:  # the playlist form: each playlist weighted by its idf overlap ** gamma
            weight = {p: sum(idf[s] for s in idf if s in tracks) for p, tracks in train.items()}
            near = sorted((p for p in weight if weight[p] > 0), key=lambda p: (-weight[p], p))
            cut_rows += len(near) > neighbours > 0
            for p in near[: neighbours or None]:
                w, tracks = weight[p], train[p]
                for t in tracks:
                    want[t] += w**gamma / df[t] ** 0.5
        scored = want > 0
        np.testing.assert_allclose(got[b].numpy()[scored], want[scored], rtol=1e-5)
        # Unscored tracks come after, in popularity order.
        rest, rest_pop = got[b].numpy()[~scored], pop[~scored]
        assert (rest < 0).all()
        assert (np.diff(rest[np.argsort(rest_pop, kind="stable")]) >= 0).all()
    assert cut_rows or not neighbours  # the cut-off was exercised


@needs_sample
def test_itemknn_gives_the_same_floats_on_any_number_of_threads(synth):
    """The co-occurrence product runs in pieces of equal edges, one per intra-op thread: every
    piece sums its rows in the order the whole product does."""
    cat = load_catalogue(synth)
    held = held_out(cat, contract.SPLIT_VAL)
    knn = ItemKNN(
        cat.edges((contract.ROLE_TRAIN,), (contract.SPLIT_TRAIN,)), popularity_counts(cat.edges(contract.VISIBLE_ROLES))
    )
    before = torch.get_num_threads()
    scores = []
    try:
        for threads in (1, 3):
            torch.set_num_threads(threads)
            chunk = knn.batch(held.queries)
            scores.append(torch.cat([chunk(a, min(a + 70, cat.num_tracks)) for a in range(0, cat.num_tracks, 70)], 1))
    finally:
        torch.set_num_threads(before)
    assert any(t.name.startswith("scoring") for t in threading.enumerate())  # the threaded path ran
    assert (scores[0] > 0).any() and torch.equal(scores[0], scores[1])


# --- evaluation end to end ----------------------------------------------------------------------
@needs_sample
def test_planted_embeddings_score_perfectly(sample, tmp_path):
    """Track embeddings one-hot, playlist embedding = its hidden tracks: every hidden track
    outranks every other, so R-precision, NDCG and recall@500 are 1 and clicks 0."""
    cat = load_catalogue(sample)
    hidden = cat.edges((contract.ROLE_HIDDEN,))
    run = write_embeddings(str(tmp_path / "run"), sample, np.eye(cat.num_tracks), hidden.toarray())
    out = evaluate(sample, run, contract.SPLIT_VAL, ["gnn"], chunk_size=128, catalogue_scope="all")
    seeded = [c for c in out["methods"]["gnn"]["by_category"] if c != "title_only"]
    assert seeded
    for c in seeded:
        m = out["methods"]["gnn"]["by_category"][c]
        assert (m["r_precision_track"], m["ndcg"], m["clicks"], m["recall@500"]) == (1, 1, 0, 1)
    assert json.loads((tmp_path / "run" / "eval_val.json").read_text()) == out


@needs_sample
@pytest.mark.parametrize("gnn_query,scope", [("playlist", "all"), ("seeds", "visible")])
def test_evaluation_equals_independent_ranking(sample, tmp_path, gnn_query, scope):
    cat = load_catalogue(sample)
    rng = np.random.default_rng(3)
    tracks, playlists = rng.standard_normal((cat.num_tracks, 8)), rng.standard_normal((cat.num_playlists, 8))
    run = write_embeddings(str(tmp_path / "run"), sample, tracks, playlists)
    out = evaluate(
        sample,
        run,
        contract.SPLIT_TEST,
        ["gnn"],
        chunk_size=100,
        batch_size=3,
        gnn_query=gnn_query,
        catalogue_scope=scope,
    )
    edges, split = _edges(sample)
    seen = {e["track_id"] for e in edges if e["role"] != contract.ROLE_HIDDEN}
    candidates = set(range(cat.num_tracks)) if scope == "all" else seen
    assert out["num_tracks_ranked"] == len(candidates) and out["catalogue"] == scope
    category = {
        r["playlist_id"]: r["seed_category"] for r in pq.read_table(os.path.join(sample, "nodes/playlist")).to_pylist()
    }
    per_cat = defaultdict(list)
    for p in sorted(p for p, s in split.items() if s == contract.SPLIT_TEST):
        seeds = {e["track_id"] for e in edges if e["playlist_id"] == p and e["role"] == contract.ROLE_SEED}
        truth = [
            e["track_id"]
            for e in edges
            if e["playlist_id"] == p and e["role"] == contract.ROLE_HIDDEN and e["track_id"] not in seeds
        ]  # a repeated seed cannot be recommended
        if not seeds:
            continue
        query = playlists[p] if gnn_query == "playlist" else tracks[sorted(seeds)].mean(axis=0)
        scores = tracks.astype(np.float32) @ query.astype(np.float32)
        order = [t for t in np.argsort(-scores, kind="stable") if t not in seeds and t in candidates][:500]
        per_cat[category[p]].append(playlist_metrics(order, truth, cat.track_artist))
    assert per_cat
    for c, rows in per_cat.items():
        got = out["methods"]["gnn"]["by_category"][c]
        assert got["num_playlists"] == len(rows)
        for m in METRICS:
            assert got[m] == pytest.approx(np.mean([r[m] for r in rows]), abs=1e-8), (c, m)


def test_shards_add_up_to_the_whole_exactly(synth):
    cat = load_catalogue(synth)
    held = held_out(cat, contract.SPLIT_VAL)
    pop = popularity_counts(cat.edges(contract.VISIBLE_ROLES))
    train = cat.edges((contract.ROLE_TRAIN,), (contract.SPLIT_TRAIN,))
    scorers = {"popularity": Popularity(pop), "itemknn": ItemKNN(train, pop)}
    fallback = TitleModel(train, cat.playlist_title, pop)
    groups = sorted({c for c in held.categories})
    args = (scorers, fallback, groups, cat.track_artist, 500, 7, 256, torch.device("cpu"))
    whole = score_sums(held, *args)
    for world in (2, 3):
        parts = [score_sums(held.slice(*shard(len(held), r, world)), *args) for r in range(world)]
        assert sum(len(range(*shard(len(held), r, world))) for r in range(world)) == len(held)
        np.testing.assert_array_equal(sum(p[0] for p in parts), whole[0])
        np.testing.assert_array_equal(sum(p[1][1:] for p in parts), whole[1][1:])


@pytest.mark.slow
def test_torchrun_two_processes_write_the_numbers_of_one(synth, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": REPO_ROOT}
    # Rank 0 fits ALS and sends the factors: both ranks rank with the very fit one process makes.
    args = [
        "--graph",
        synth,
        "--methods",
        "popularity,itemknn,als",
        "--batch-size",
        "5",
        "--chunk-size",
        "300",
        "--als-factors",
        "8",
        "--als-iterations",
        "5",
    ]
    one = subprocess.run(
        [sys.executable, "-m", "trainer.evaluate", *args, "--run", str(tmp_path / "one")],
        env=env,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert one.returncode == 0, one.stderr
    # "--" ends torchrun's own options: without it, torchrun reads "--run" as its "--run-path".
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "--",
            "trainer.evaluate",
            *args,
            "--run",
            str(tmp_path / "two"),
        ],
        env=env,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    a = json.loads((tmp_path / "one" / "eval_val.json").read_text())
    b = json.loads((tmp_path / "two" / "eval_val.json").read_text())
    assert b["world_size"] == 2 and a["world_size"] == 1
    assert a["methods"] == b["methods"]


# --- errors --------------------------------------------------------------------------------------
def test_gnn_without_embeddings_is_a_clear_error(synth, tmp_path):
    with pytest.raises(FileNotFoundError, match="--methods gnn: no embeddings in"):
        evaluate(synth, str(tmp_path / "empty"), contract.SPLIT_VAL, ["gnn"])


def test_gnn_left_out_for_lack_of_embeddings_is_said(synth, tmp_path, capsys):
    run = tmp_path / "run"
    results = evaluate(synth, str(run), contract.SPLIT_VAL, batch_size=512)
    assert "gnn" not in results["methods"]
    assert results["methods_left_out"]["gnn"].startswith(f"no embeddings in {run}/embeddings/")
    assert json.loads((run / "eval_val.json").read_text())["methods_left_out"] == results["methods_left_out"]
    assert f"note: gnn left out: no embeddings in {run}/embeddings/" in capsys.readouterr().err


def test_an_unwritable_run_dir_is_named_before_ranking(synth, tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    assert main(["--graph", synth, "--run", str(tmp_path / "a_file"), "--methods", "popularity"]) == 2
    assert f"--run {tmp_path / 'a_file'}/eval_val.json cannot be written" in capsys.readouterr().err


def test_unknown_method_is_named(synth, tmp_path):
    with pytest.raises(ValueError, match=r"unknown \['svd'\]"):
        evaluate(synth, str(tmp_path / "r"), contract.SPLIT_VAL, ["svd"])


def test_run_trained_on_another_graph_is_refused(synth, tmp_path):
    other = toy_graph_dir(str(tmp_path / "other"), 300, seed=5, tracks_per_genre=200)
    cat = load_catalogue(other)
    run = write_embeddings(
        str(tmp_path / "run"), other, np.zeros((cat.num_tracks, 4)), np.zeros((cat.num_playlists, 4))
    )
    with pytest.raises(run_dir.RunMismatchError, match="was trained on graph .* not on"):
        evaluate(synth, run, contract.SPLIT_VAL, ["gnn"])
    identity = os.path.join(run, "embeddings", "identity.json")  # without the graph record,
    with open(identity, "w") as f:  # the embeddings themselves give it away
        json.dump({"checkpoint": None, "checkpoint_id": None}, f)
    with pytest.raises(run_dir.RunMismatchError, match="embeddings of another graph"):
        evaluate(synth, run, contract.SPLIT_VAL, ["gnn"])


def test_mistyped_edge_table_is_named(synth, tmp_path):
    import shutil

    bad = str(tmp_path / "bad")
    shutil.copytree(synth, bad)
    d = os.path.join(bad, "edges/playlist_track")
    for f in os.listdir(d):
        t = pq.read_table(os.path.join(d, f))
        pq.write_table(t.set_column(1, "track_id", t["track_id"].cast(pa.int32())), os.path.join(d, f))
    with pytest.raises(contract.ContractError, match="column track_id is int32, contract says int64"):
        load_catalogue(bad)


def test_als_end_to_end_from_the_command_line(synth, tmp_path, monkeypatch):
    run = tmp_path / "als"
    args = [
        "--graph",
        synth,
        "--run",
        str(run),
        "--methods",
        "als,popularity",
        "--als-factors",
        "8",
        "--als-iterations",
        "5",
        "--als-alpha",
        "10",
        "--als-threads",
        "1",
        "--chunk-size",
        "300",
    ]
    assert main(args) == 0
    out = json.loads((run / "eval_val.json").read_text())
    assert out["als"] == {
        "factors": 8,
        "regularization": ALSParams().regularization,
        "alpha": 10.0,
        "iterations": 5,
        "random_state": 0,
        "num_threads": 1,
    }
    als, pop = out["methods"]["als"]["overall"], out["methods"]["popularity"]["overall"]
    assert als["num_playlists"] == pop["num_playlists"] == out["num_playlists"] > 0
    # The synthetic playlists have planted genres: co-occurrence beats popularity by far.
    assert als["r_precision"] > 2 * pop["r_precision"]

    # The fit was kept in the run dir: the same evaluation again fits nothing and agrees.
    def no_fit(*_):
        raise AssertionError("ALS fitted again for the same graph and settings")

    monkeypatch.setattr(baselines, "fit_als", no_fit)
    assert main(args) == 0
    again = json.loads((run / "eval_val.json").read_text())["methods"]["als"]["overall"]
    assert again == als
    with pytest.raises(AssertionError, match="fitted again"):  # other settings: a new fit
        main([a if a != "5" else "6" for a in args])


def test_itemknn_neighbour_cut_off_from_the_command_line(synth, tmp_path):
    run = tmp_path / "knn"
    results = {}
    for n in (0, 5):
        assert (
            main(
                [
                    "--graph",
                    synth,
                    "--run",
                    str(run),
                    "--methods",
                    "itemknn",
                    "--itemknn-neighbours",
                    str(n),
                    "--chunk-size",
                    "300",
                ]
            )
            == 0
        )
        out = json.loads((run / "eval_val.json").read_text())
        assert out["itemknn"] == {"beta": 0.0, "gamma": 1.0, "neighbours": n}
        results[n] = out["methods"]["itemknn"]["overall"]
    assert results[0]["num_playlists"] == results[5]["num_playlists"] > 0
    assert results[0] != results[5]  # five neighbours rank otherwise than every playlist


def test_overall_counts_a_playlist_once_whatever_the_groups(synth):
    cat = load_catalogue(synth)
    held = held_out(cat, contract.SPLIT_VAL)
    pop = popularity_counts(cat.edges(contract.VISIBLE_ROLES))
    train = cat.edges((contract.ROLE_TRAIN,), (contract.SPLIT_TRAIN,))
    fallback = TitleModel(train, cat.playlist_title, pop)
    args = ({"itemknn": ItemKNN(train, pop)}, fallback)
    tail = (cat.track_artist, 500, 64, 256, torch.device("cpu"))
    every = score_sums(held, *args, sorted(set(held.categories)), *tail)
    none = score_sums(held, *args, [], *tail)  # no category asked for: overall alone
    np.testing.assert_array_equal(none[0][:, 0], every[0][:, 0])
    assert none[1][0] == every[1][0] == len(held)


@pytest.mark.parametrize("config", [{"track_bias": True}, {"track_bias": False}, None])
def test_an_export_that_does_not_say_its_bias_takes_the_runs_config_or_is_refused(synth, tmp_path, config):
    # Exports from before the identity recorded track_bias: the run's config.json says whether the
    # track vectors end in a bias (never a guess); without one the export is refused by name.
    from trainer.methods import gnn_scorer

    cat = load_catalogue(synth)
    rng = np.random.default_rng(0)
    run = write_embeddings(
        str(tmp_path / "run"),
        synth,
        rng.normal(size=(cat.num_tracks, 5)).astype(np.float32),
        rng.normal(size=(cat.num_playlists, 5)).astype(np.float32),
    )
    ident = embeddings.path(run, embeddings.IDENTITY)
    recorded = json.loads(open(ident).read())
    del recorded["track_bias"]
    open(ident, "w").write(json.dumps(recorded))
    if config is None:
        with pytest.raises(run_dir.RunMismatchError, match="do not say whether their track vectors end in a bias"):
            gnn_scorer(cat, run, torch.device("cpu"))
        return
    (tmp_path / "run" / run_dir.CONFIG_FILE).write_text(json.dumps(config))
    scorer = gnn_scorer(cat, run, torch.device("cpu"))
    assert scorer.bias_column is config["track_bias"]


# --- subsets and paired comparisons --------------------------------------------------------------
def test_evenly_spaced_playlists_keep_their_order_and_every_category(synth):
    held = held_out(load_catalogue(synth), "test")
    assert held.evenly(0) is held and held.evenly(len(held)) is held
    few = held.evenly(len(held) // 3)
    assert len(few) == len(held) // 3
    assert np.all(np.diff(few.playlist_ids) > 0) and set(few.playlist_ids) <= set(held.playlist_ids)
    assert set(few.categories) == set(held.categories)


def test_paired_comparison_ranks_the_first_method_against_each_other(synth, tmp_path, capsys):
    main_of = runpy.run_path(os.path.join(REPO_ROOT, "bench", "paired_comparison.py"))["main"]
    main_of(
        [
            "--graph",
            synth,
            "--run",
            str(tmp_path),
            "--splits",
            "test",
            "--max-playlists",
            "9",
            "--methods",
            "popularity,popularity,itemknn",
            "--resamples",
            "50",
        ]
    )
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 * 3 and all(line.endswith("n=9") for line in lines)
    itself = [line for line in lines if "itemknn" not in line]
    assert len(itself) == 3 and all("diff +0.0000 (95% interval +0.0000 .. +0.0000)" in line for line in itself)

    # --ranker-half: only the val playlists apart from a val_selection=half run's checkpoint selection
    from trainer.gnn.shards import selection_half

    (tmp_path / "config.json").write_text(json.dumps({"val_selection": "half"}))
    val = held_out(load_catalogue(synth), "val").playlist_ids
    apart = int((~selection_half(val)).sum())
    assert 0 < apart < len(val)
    quick = ["--methods", "popularity,itemknn", "--resamples", "50"]
    main_of(["--graph", synth, "--run", str(tmp_path), "--splits", "val", "--ranker-half", *quick])
    main_of(["--graph", synth, "--run", str(tmp_path), "--splits", "val", *quick])
    lines = capsys.readouterr().out.splitlines()
    assert [line.rsplit("n=", 1)[1] for line in lines] == [str(apart)] * 3 + [str(len(val))] * 3
