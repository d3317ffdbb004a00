"""The two-stage ranker end to end on a small graph: candidates, examples free of leaked labels,
the booster built from val, and ``rerank`` as a method of evaluate."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import shutil
import sys

import numpy as np
import pytest
from graphdir_fixture import REPO_ROOT, toy_graph_dir
from test_evaluate import write_embeddings

sys.path.insert(0, os.path.join(REPO_ROOT, "bench"))
import real_data  # noqa: E402  (bench/ scripts are not a package)

from etl import contract  # noqa: E402
from trainer import methods, recommend, rerank
from trainer.evaluate import main as evaluate_main
from trainer.evaluation import protocol
from trainer.evaluation.baselines import ALSParams
from trainer.evaluation.scoring import TopK, top_k
from trainer.io import checksum, ranker
from trainer.io.catalogue import load_catalogue
from trainer.io.run_dir import RunMismatchError
from trainer.ranker import candidates
from trainer.ranker import model as second_stage

SMALL_ALS = ALSParams(factors=8, iterations=4, num_threads=1)


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    return toy_graph_dir(str(tmp_path_factory.mktemp("g")), 800, holdout=0.1, tracks_per_genre=120)


@pytest.fixture(scope="module")
def run(graph, tmp_path_factory):
    cat = load_catalogue(graph)
    rng = np.random.default_rng(0)
    path = str(tmp_path_factory.mktemp("run"))
    return write_embeddings(
        path,
        graph,
        rng.normal(size=(cat.num_tracks, 8)).astype(np.float32),
        rng.normal(size=(cat.num_playlists, 8)).astype(np.float32),
    )


def test_candidates_are_the_union_of_the_retrievers_top_k(graph, run):
    cat = load_catalogue(graph)
    held = protocol.held_out(cat, contract.SPLIT_VAL)
    scorers, title = methods.build_scorers(cat, run, ["gnn", "itemknn", "popularity"], "cpu")
    cands = candidates.generate(scorers, title, held.queries, cat.num_tracks, 20, 97)
    has_seeds = held.queries.num_seeds() > 0
    for name, scorer in {**scorers, candidates.TITLE: title}.items():
        rows = np.arange(len(held)) if name == candidates.TITLE else np.flatnonzero(has_seeds)
        sub = held.queries.take(rows)
        ids, values = top_k(scorer.batch(sub), sub, cat.num_tracks, 20, 97)  # same chunking: same ties
        for i, b in enumerate(rows):
            mine = cands.tracks[cands.indptr[b] : cands.indptr[b + 1]]
            rank = cands.ranks[name][cands.indptr[b] : cands.indptr[b + 1]]
            score = cands.scores[name][cands.indptr[b] : cands.indptr[b + 1]]
            proposed = mine[~np.isnan(rank)][np.argsort(rank[~np.isnan(rank)])]
            np.testing.assert_array_equal(proposed, ids[i][ids[i] >= 0])
            np.testing.assert_allclose(np.sort(score[~np.isnan(score)])[::-1], values[i][ids[i] >= 0], rtol=1e-6)
    union = [set(cands.tracks[cands.indptr[b] : cands.indptr[b + 1]]) for b in range(len(held))]
    assert all(not (u & set(held.queries.seeds(b))) for b, u in enumerate(union))  # seeds never proposed
    assert all(len(u) >= 20 for u in union)


def test_no_label_is_an_edge_a_retriever_was_fitted_on(graph, run):
    cat = load_catalogue(graph)
    held = protocol.held_out(cat, contract.SPLIT_VAL)
    scorers, title = methods.build_scorers(cat, run, ["gnn", "itemknn"], "cpu")
    cands = candidates.generate(scorers, title, held.queries, cat.num_tracks, 50, 1000)
    y = candidates.labels(cands, held.truth_indptr, held.truth_tracks, cat.num_tracks)
    assert y.sum() > 0
    pos_playlist = held.playlist_ids[cands.rows()[y > 0]]
    pos_track = cands.tracks[y > 0]
    # Every positive is a hidden edge of a val playlist ...
    hidden = cat.edges((contract.ROLE_HIDDEN,))
    assert (np.asarray(hidden[pos_playlist, pos_track]).ravel() == 1).all()
    assert set(cat.playlist_split[pos_playlist]) == {contract.SPLIT_VAL}
    # ... and none is an edge item-kNN or ALS were fitted on (train edges of training playlists)
    # or the GNN propagated (every visible edge).
    for roles in ((contract.ROLE_TRAIN,), contract.VISIBLE_ROLES):
        assert np.asarray(cat.edges(roles)[pos_playlist, pos_track]).ravel().sum() == 0


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A graph holding tracks known only through held-out playlists' hidden edges, and a run whose
    GNN ranks one of them first for every playlist."""
    graph = toy_graph_dir(
        str(tmp_path_factory.mktemp("planted")), 400, holdout=0.1, tracks_per_genre=120, hidden_only=3
    )
    cat = load_catalogue(graph)
    never = np.flatnonzero(~protocol.visible_catalogue(cat))
    rng = np.random.default_rng(0)
    tracks = rng.normal(size=(cat.num_tracks, 8)).astype(np.float32)
    tracks[never] = 100.0  # far along every playlist's (all positive) direction
    playlists = np.abs(rng.normal(size=(cat.num_playlists, 8))).astype(np.float32)
    return graph, write_embeddings(str(tmp_path_factory.mktemp("planted_run")), graph, tracks, playlists), never


def test_a_track_known_only_from_hidden_edges_is_neither_a_candidate_nor_an_example(planted, monkeypatch):
    graph, run, never = planted
    cat = load_catalogue(graph)
    held = protocol.held_out(cat, contract.SPLIT_VAL)
    assert len(never) >= 3 and np.isin(held.truth_tracks, never).any()  # ground truth of val playlists
    gnn = methods.build_scorers(cat, run, ["gnn"], "cpu")[0]["gnn"]
    first, _ = top_k(gnn.batch(held.queries), held.queries, cat.num_tracks, 1, 500)
    assert np.isin(first[:, 0], never).all()  # the GNN's first choice, where nothing masks it
    seen = []

    def recording(*args, **kwargs):
        out = real(*args, **kwargs)
        seen.append(out.tracks)
        return out

    real = candidates.generate
    monkeypatch.setattr(candidates, "generate", recording)  # the build's examples
    monkeypatch.setattr(second_stage, "generate", recording)  # the ranker at query time
    params = rerank.RankerParams(k=40, folds=3, max_rounds=20, early_stopping=5, min_data_in_leaf=5)
    built = rerank.build(graph, run, params, SMALL_ALS, batch_size=16, chunk_size=500, device="cpu")
    assert built["catalogue"] == "visible" and built["trained_on"]["positives"] > 0
    assert sum(len(t) for t in seen) == built["trained_on"]["candidates"]  # every example is a candidate
    assert not np.isin(np.concatenate(seen), never).any()
    at_build = len(seen)
    assert (
        evaluate_main(
            ["--graph", graph, "--run", run, "--methods", "rerank,fusion", "--split", "test", "--chunk-size", "500"]
        )
        == 0
    )
    assert len(seen) > at_build and not np.isin(np.concatenate(seen[at_build:]), never).any()


@pytest.fixture(scope="module")
def built(graph, run):
    params = rerank.RankerParams(k=40, folds=3, max_rounds=30, early_stopping=5, min_data_in_leaf=5)
    return rerank.build(graph, run, params, SMALL_ALS, batch_size=32, chunk_size=500, device="cpu")


def test_rerank_is_built_from_val_and_ranked_by_evaluate(graph, run, built):
    assert built["trained_on"]["split"] == contract.SPLIT_VAL and built["trained_on"]["positives"] > 0
    assert 0 < built["recall"]["all"] <= 1 and built["recall"]["all"] >= max(
        built["recall"][m] for m in ("gnn", "als", "itemknn")
    )
    assert set(built["importances"]) == set(built["features"]) and 1 <= built["cv"]["rounds"] <= 30
    assert ranker.exists(run)
    # Without --methods, evaluate ranks with it beside the others.
    assert (
        evaluate_main(
            [
                "--graph",
                graph,
                "--run",
                run,
                "--split",
                "test",
                "--chunk-size",
                "500",
                "--als-factors",
                "8",
                "--als-iterations",
                "4",
                "--als-threads",
                "1",
            ]
        )
        == 0
    )
    out = json.loads(open(f"{run}/eval_test.json").read())
    assert {"rerank", "fusion", "gnn", "itemknn", "als", "popularity"} <= set(out["methods"])
    assert set(built["fusion"]) >= {"*"} and all(abs(sum(w) - 1) < 1e-9 for w in built["fusion"].values())
    rr, knn = out["methods"]["rerank"]["overall"], out["methods"]["itemknn"]["overall"]
    assert rr["num_playlists"] == knn["num_playlists"] > 0
    # The planted genres make co-occurrence strong; the ranker reads item-kNN's scores among others
    # and must not fall far below it (random GNN embeddings are its noise).
    assert rr["r_precision"] > 0.5 * knn["r_precision"] > 0
    # recommend takes it as a method like the others: a graph playlist, and seed URIs.
    cat = load_catalogue(graph)
    pid = int(cat.playlist_pid[protocol.held_out(cat, contract.SPLIT_TEST).playlist_ids[0]])
    rows = recommend.recommend(graph, run, pid=pid, k=5, method="rerank", device="cpu")
    # ... and the one recommend and submit use when not told, since the run has a ranker.
    assert methods.default_method(run) == "rerank"
    assert recommend.recommend(graph, run, pid=pid, k=5, device="cpu") == rows
    uris = list(cat.track_uri[:3])
    rows_uris = recommend.recommend(graph, run, tracks=uris, k=5, method="rerank", device="cpu")
    assert len(rows) == len(rows_uris) == 5 and not set(uris) & {r["track_uri"] for r in rows_uris}


def test_every_feature_is_in_one_ablation_group(built):
    from trainer.ranker.candidate_features import groups

    by_group = groups(built["features"])
    assert set(by_group) == {"retrievers", "title", "track", "seed_overlap", "seed_similarity", "query"}
    assert sorted(n for names in by_group.values() for n in names) == sorted(built["features"])
    assert by_group["title"] == ["title_score", "title_rank", "title_z"]


def test_the_real_data_comparison_pairs_the_ranker_with_the_others(graph, run, built, tmp_path):
    out = tmp_path / "cmp.json"
    real_data.main(["--graph", graph, "--runs", run, "--split", "test", "--json", str(out)])
    table = json.loads(out.read_text())
    assert {"rerank", "gnn", "itemknn", "als", "popularity"} <= set(table["table"])
    assert {"rerank-gnn", "rerank-itemknn", "gnn-als", "fusion-gnn"} <= set(table["paired"])


def test_rerank_and_fusion_share_one_set_of_retrievers_and_rank_as_built_alone(graph, run, built):
    cat = load_catalogue(graph)
    both, _ = methods.build_scorers(cat, run, ["rerank", "fusion"], "cpu")
    assert both["rerank"].retrievers is both["fusion"].retrievers
    assert both["rerank"].similarity is both["fusion"].similarity
    held = protocol.held_out(cat, contract.SPLIT_TEST)
    for m in ("rerank", "fusion"):
        alone = methods.build_scorers(cat, run, [m], "cpu")[0][m]
        ids = [top_k(s.batch(held.queries), held.queries, cat.num_tracks, 50, 500)[0] for s in (both[m], alone)]
        np.testing.assert_array_equal(*ids)
    assert not np.array_equal(
        *(top_k(both[m].batch(held.queries), held.queries, cat.num_tracks, 50, 500)[0] for m in ("rerank", "fusion"))
    )


def test_one_pass_ranks_every_method_as_separate_runs_with_each_retriever_scored_once(graph, run, built, monkeypatch):
    cat = load_catalogue(graph)
    allowed = protocol.visible_catalogue(cat)
    names = ["gnn", "popularity", "itemknn", "als", "rerank", "fusion"]
    together, fallback = methods.build_scorers(cat, run, names, "cpu", als=SMALL_ALS, allowed=allowed)
    for m in second_stage.RETRIEVERS:  # built with the columns' settings: the columns' own scorers
        assert together["rerank"].retrievers[m] is together[m]
    held = protocol.held_out(cat, contract.SPLIT_TEST)
    groups = protocol.category_order(held.categories)
    calls = collections.Counter()
    for m in second_stage.RETRIEVERS:
        scorer = together[m]
        monkeypatch.setattr(scorer, "batch", lambda q, f=scorer.batch, m=m: calls.update([m]) or f(q))
    monkeypatch.setattr(
        second_stage, "features", lambda *a, f=second_stage.features: calls.update(["features"]) or f(*a)
    )
    batch, k = 16, built["params"]["k"]  # the list length the ranker's candidates have: one top-k serves both
    one, counts = protocol.score_sums(
        held, together, fallback, groups, cat.track_artist, k, batch, 500, "cpu", allowed=allowed
    )
    seeded = sum(held.queries.num_seeds()[lo : lo + batch].any() for lo in range(0, len(held), batch))
    # Once per batch, not per method: the retrievers' top-k, and the candidates' features that
    # rerank and fusion both rank.
    assert seeded > 1 and calls == {m: seeded for m in [*second_stage.RETRIEVERS, "features"]}
    monkeypatch.undo()
    for i, m in enumerate(names):
        alone, title = methods.build_scorers(cat, run, [m], "cpu", als=SMALL_ALS, allowed=allowed)
        sums, _ = protocol.score_sums(
            held, alone, title, groups, cat.track_artist, k, batch, 500, "cpu", allowed=allowed
        )
        np.testing.assert_array_equal(one[i], sums[0], err_msg=m)
    # A pass over another catalogue than the ranker's is refused, not silently mixed.
    top = TopK(held.queries, cat.num_tracks, 500, "cpu", None)
    with pytest.raises(ValueError, match="another catalogue"):
        together["rerank"].batch(held.queries, top)


def test_the_ranker_learns_from_the_val_half_that_did_not_select_the_checkpoint(graph, run, tmp_path, caplog):
    from trainer.gnn.validation import ranking_set
    from trainer.io.graph import load_graph

    cat = load_catalogue(graph)
    held = protocol.held_out(cat, contract.SPLIT_VAL)
    half_run = str(tmp_path / "run")
    shutil.copytree(run, half_run)
    with open(os.path.join(half_run, "config.json"), "w") as f:
        json.dump({"val_selection": "half"}, f)
    mine, which = methods.ranker_playlists(held, half_run)
    selecting = ranking_set(load_graph(graph), 0, seed=0, half=True).held.playlist_ids
    assert which == "ranker" and len(mine) > 0 and len(selecting) > 0
    assert not set(mine.playlist_ids) & set(selecting)
    seeded = held.playlist_ids[held.queries.num_seeds() > 0]
    assert set(selecting) | set(mine.playlist_ids) >= set(seeded)  # together every val playlist
    identity = rerank.build(
        graph,
        half_run,
        rerank.RankerParams(k=40, folds=3, max_rounds=10, early_stopping=5, min_data_in_leaf=5),
        SMALL_ALS,
        batch_size=32,
        chunk_size=500,
        device="cpu",
    )
    assert identity["trained_on"]["val_half"] == "ranker" and identity["trained_on"]["playlists"] == len(mine)
    # A run from before the halves (its config says nothing) selected on all: every val playlist, said.
    with caplog.at_level("WARNING", logger="trainer.methods"):
        old, which = methods.ranker_playlists(held, run)
    assert which == "all" and len(old) == len(held) and "val_selection=all" in caplog.text


@contextlib.contextmanager
def _identity_changed(run, change):
    """The ranker's identity.json as ``change`` leaves it, restored afterwards (the run is shared)."""
    path = ranker.path(run, ranker.IDENTITY)
    original = open(path).read()
    identity = json.loads(original)
    change(identity)
    open(path, "w").write(json.dumps(identity))
    try:
        yield
    finally:
        open(path, "w").write(original)


def test_a_ranker_of_another_checkpoint_is_refused(graph, run, built):
    with _identity_changed(run, lambda identity: identity.update(checkpoint_id="0123456789ab")):
        with pytest.raises(RunMismatchError, match="built on the embeddings of checkpoint 0123456789ab"):
            methods.build_scorers(load_catalogue(graph), run, ["rerank"], "cpu")


@pytest.mark.parametrize(
    "recorded, named",
    [
        (None, "training"),  # built when the title model counted the training playlists' edges alone
        ("visible", "visible"),  # built when it counted every visible edge, without the name tier
    ],
)
def test_a_ranker_built_on_another_title_model_is_refused(graph, run, built, recorded, named):
    def change(identity):
        identity.pop("title") if recorded is None else identity.update(title=recorded)

    with _identity_changed(run, change):
        with pytest.raises(RunMismatchError, match=f"title model '{named}', this one is 'visible\\+names'"):
            methods.build_scorers(load_catalogue(graph), run, ["rerank"], "cpu")


def test_a_ranker_of_another_graph_is_refused(graph, run, built):
    with _identity_changed(run, lambda identity: identity.update(graph={"created_at": "elsewhere"})):
        with pytest.raises(RunMismatchError, match="was built on another graph .*elsewhere.*build it again"):
            methods.build_scorers(load_catalogue(graph), run, ["rerank"], "cpu")


def test_a_ranker_of_other_features_is_refused(graph, run, built):
    # as built when the GNN's seed cosines took its bias column in (no version recorded)
    with _identity_changed(run, lambda identity: identity.pop("features_version")):
        with pytest.raises(RunMismatchError, match="built on features of version 1, these are of version 3"):
            methods.build_scorers(load_catalogue(graph), run, ["rerank"], "cpu")
    # as built when never-visible tracks were candidates
    with _identity_changed(run, lambda identity: identity.update(features_version=2)):
        with pytest.raises(RunMismatchError, match="built on features of version 2, these are of version 3"):
            methods.build_scorers(load_catalogue(graph), run, ["rerank"], "cpu")


def test_fusion_weights_find_the_retriever_that_ranks_the_hidden_tracks_first():
    rng = np.random.default_rng(0)
    group = np.array([30, 25, 40, 35])
    n = group.sum()
    y = (rng.random(n) < 0.2).astype(np.float32)
    truth = np.array([8, 6, 9, 7])
    names = ["gnn_z", "als_z", "itemknn_z"]
    # als's z-score knows the labels; the others are noise.
    x = np.stack([rng.normal(size=n), y * 3 + rng.normal(scale=0.1, size=n), rng.normal(size=n)], 1).astype(np.float32)
    x[rng.random(n) < 0.1, 0] = np.nan  # not proposed by the GNN
    categories = np.array(["first_5", "first_5", "random_25", "random_25"], dtype=object)
    weights = second_stage.fit_fusion(x, y, group, names, ["gnn", "als", "itemknn"], categories, truth)
    retrievers = ["gnn", "als", "itemknn"]
    best = second_stage.r_precision_track(
        second_stage.fused(x, names, retrievers, np.array([0.0, 1.0, 0.0])), y, group, truth
    )
    for c in ("first_5", "random_25", "*"):
        assert weights[c][1] >= 0.5  # als carries the most weight ...
        mine = second_stage.r_precision_track(
            second_stage.fused(x, names, retrievers, np.array(weights[c])), y, group, truth
        )
        assert mine.mean() == pytest.approx(best.mean())  # ... and ranks as well as als alone
    noise = second_stage.r_precision_track(
        second_stage.fused(x, names, retrievers, np.array([1.0, 0.0, 0.0])), y, group, truth
    )
    assert noise.mean() < best.mean()
    # R-precision over the candidates, against plain Python.
    score = second_stage.fused(x, names, ["gnn", "als", "itemknn"], np.array([0.5, 0.2, 0.3]))
    got = second_stage.r_precision_track(score, y, group, truth)
    start = 0
    for q, size in enumerate(group):
        s, lab = score[start : start + size], y[start : start + size]
        top = sorted(range(size), key=lambda i: -s[i])[: truth[q]]
        assert got[q] == pytest.approx(sum(lab[i] for i in top) / truth[q])
        start += size


@pytest.mark.parametrize("track_bias", [False, True])
def test_seed_similarity_against_plain_python(graph, run, track_bias, tmp_path):
    """Each candidate's cosine to the seeds in the GNN's and ALS's item spaces and its training
    co-occurrence with them, recomputed pair by pair from the vectors and the playlists' track sets;
    a bias column the GNN's track vectors end in is no direction and stays out of the cosine."""
    from trainer.ranker.candidate_features import SeedSimilarity

    cat = load_catalogue(graph)
    if track_bias:
        rng = np.random.default_rng(1)
        tracks = rng.normal(size=(cat.num_tracks, 8)).astype(np.float32)
        tracks[:, -1] *= 50  # a bias that would swamp the cosine
        run = write_embeddings(
            str(tmp_path), graph, tracks, rng.normal(size=(cat.num_playlists, 8)).astype(np.float32), track_bias=True
        )
    held = protocol.held_out(cat, contract.SPLIT_VAL)
    scorers, title = methods.build_scorers(cat, run, ["gnn", "als", "itemknn"], "cpu", als=SMALL_ALS)
    cands = candidates.generate(scorers, title, held.queries, cat.num_tracks, 10, 1000)
    cols = SeedSimilarity(scorers).columns(cands, held.queries)
    train = cat.edges((contract.ROLE_TRAIN,), splits=(contract.SPLIT_TRAIN,)).tocsr()
    playlists_of = {}
    for p in range(train.shape[0]):
        for t in train.indices[train.indptr[p] : train.indptr[p + 1]]:
            playlists_of.setdefault(int(t), set()).add(p)
    vectors = {m: scorers[m].tracks.numpy().astype(np.float64) for m in ("gnn", "als")}
    if track_bias:
        vectors["gnn"] = vectors["gnn"][:, :-1]
    checked = 0
    for b in range(len(held)):
        seeds = [int(s) for s in held.queries.seeds(b)]
        for i in range(cands.indptr[b], cands.indptr[b + 1]):
            c = int(cands.tracks[i])
            if not seeds:
                assert np.isnan(cols["co_seed_max"][i]) and np.isnan(cols["gnn_seed_mean"][i])
                continue
            for m, v in vectors.items():
                cos = [v[c] @ v[s] / max(np.linalg.norm(v[c]) * np.linalg.norm(v[s]), 1e-12) for s in seeds]
                assert cols[f"{m}_seed_max"][i] == pytest.approx(max(cos), abs=1e-5)
                assert cols[f"{m}_seed_mean"][i] == pytest.approx(np.mean(cos), abs=1e-5)
            mine = playlists_of.get(c, set())
            co = [len(mine & playlists_of.get(s, set())) for s in seeds]
            cos = [n / np.sqrt(max(len(mine) * len(playlists_of.get(s, set())), 1)) for n, s in zip(co, seeds)]
            assert cols["co_seed_max"][i] == pytest.approx(max(cos), abs=1e-6)
            assert cols["co_seed_mean"][i] == pytest.approx(np.mean(cos), abs=1e-6)
            assert cols["co_seed_share"][i] == pytest.approx(np.mean([n > 0 for n in co]))
            checked += 1
    assert checked > 100 and np.nanmax(cols["co_seed_share"]) > 0


def test_a_damaged_booster_is_named_by_every_command_and_an_unchecked_one_warned(graph, run, built, capsys, caplog):
    model = ranker.path(run, ranker.MODEL)
    original = open(model, "rb").read()
    open(model, "wb").write(original[: len(original) // 2])  # cut short, as a full disk or a killed copy leaves it
    try:
        with pytest.raises(checksum.Damaged, match=r"model.txt is damaged: its SHA-256 .* build it again"):
            methods.build_scorers(load_catalogue(graph), run, ["rerank"], "cpu")
        assert evaluate_main(["--graph", graph, "--run", run, "--methods", "rerank", "--split", "test"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "model.txt is damaged" in err[0] and "Traceback" not in err[0]
    finally:
        open(model, "wb").write(original)
    # a ranker from before the checksum was recorded: read as it is, with a warning
    with _identity_changed(run, lambda identity: identity.pop("model_sha256")):
        with caplog.at_level("WARNING"):
            methods.build_scorers(load_catalogue(graph), run, ["rerank"], "cpu")
    assert "has no recorded checksum (written by an earlier version): read unchecked" in caplog.text
