"""The ALS baseline: its fold-in against implicit's own, and its ranking on tiny inline matrices."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from trainer.evaluation.baselines import ALS, ALSParams, fit_als, fold_in
from trainer.evaluation.scoring import Queries, top_k
from trainer.io import als_factors

SMALL = ALSParams(factors=6, regularization=0.3, alpha=4.0, iterations=4, random_state=3, num_threads=1)


def binary(rows: list[list[int]], num_tracks: int) -> sp.csr_matrix:
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
    return sp.csr_matrix((np.ones(indptr[-1], np.float32), np.concatenate(rows), indptr), shape=(len(rows), num_tracks))


def random_train(num_playlists=40, num_tracks=30, seed=0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    return binary(
        [sorted(rng.choice(num_tracks, rng.integers(2, 9), replace=False)) for _ in range(num_playlists)], num_tracks
    )


def test_fold_in_equals_implicit_recalculate_user():
    train = random_train()
    model = fit_als(train, SMALL)
    seeds = [np.array([0, 3, 7]), np.array([5]), np.array([1, 2, 4, 8, 9, 10, 29])]
    queries = Queries.from_lists(seeds, [""] * 3)
    ours = fold_in(torch.from_numpy(model.item_factors), queries, SMALL.alpha, SMALL.regularization).numpy()
    # implicit's alpha is 1 in fit_als: its input data is the confidence itself.
    confidence = sp.csr_matrix(
        (np.full(len(queries.seed_tracks), 1 + SMALL.alpha, np.float32), queries.seed_tracks, queries.seed_indptr),
        shape=(3, train.shape[1]),
    )
    theirs = model.recalculate_user(np.arange(3), confidence)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    assert np.abs(theirs).max() > 1e-2  # not a comparison of two zero vectors

    als = ALS(train, np.ones(train.shape[1]), SMALL)
    ids, _ = top_k(als.batch(queries), queries, train.shape[1], 10, 7)
    want, _ = model.recommend(np.arange(3), confidence, N=10, recalculate_user=True, filter_already_liked_items=True)
    np.testing.assert_array_equal(ids, want)


def test_same_seed_same_factors_other_seed_other_factors():
    train = random_train()
    a, b = fit_als(train, SMALL), fit_als(train, SMALL)
    np.testing.assert_array_equal(a.item_factors, b.item_factors)
    c = fit_als(train, ALSParams(**{**SMALL.as_dict(), "random_state": 4}))
    assert not np.allclose(a.item_factors, c.item_factors)


def test_co_occurring_track_ranks_first_untrained_tracks_last_by_popularity():
    # Tracks 0 and 1 always together; 2..5 in pairs of their own; 6 and 7 have no training edge.
    train = binary([[0, 1]] * 6 + [[2, 3], [4, 5], [2, 5], [3, 4]] * 2, 8)
    popularity = np.array([9, 8, 7, 6, 5, 4, 1, 3], np.float64)
    als = ALS(train, popularity, ALSParams(factors=4, regularization=0.1, alpha=10.0, iterations=15, num_threads=1))
    queries = Queries.from_lists([np.array([0]), np.array([6])], ["", ""])
    ids, _ = top_k(als.batch(queries), queries, 8, 7, 3)
    assert ids[0, 0] == 1
    assert ids[0, -2:].tolist() == [7, 6]  # after every trained track, the more popular first
    # No seed with a training edge: nothing to fold in, popularity alone.
    assert ids[1].tolist() == [0, 1, 2, 3, 4, 5, 7]


def test_untrained_tracks_rank_below_negative_scores():
    train = binary([[0, 1], [0, 2], [1, 2]], 4)  # track 3: no training edge
    # Planted factors: track 1 points away from track 0, so seed 0 scores it below zero.
    planted = torch.tensor([[3.0, 0.0], [-2.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    als = ALS(train, np.array([1.0, 1.0, 1.0, 50.0]), SMALL, item_factors=planted)
    queries = Queries.from_lists([np.array([0])], [""])
    scores = als.batch(queries)(0, 4)[0]
    assert scores[1] < 0
    assert scores[3] < scores[1]
    ids, _ = top_k(als.batch(queries), queries, 4, 3, 4)
    assert ids[0].tolist() == [2, 1, 3]


def test_bad_params_are_named():
    with pytest.raises(ValueError, match="regularization > 0 and alpha > 0"):
        ALSParams(regularization=0.0)
    with pytest.raises(ValueError, match="factors >= 1"):
        ALSParams(factors=0)


def test_factors_are_kept_in_the_run_dir_for_the_same_graph_and_settings(tmp_path, caplog):
    run = str(tmp_path / "run")
    manifest = {
        "schema_version": 9,
        "created_at": "2026-01-01T00:00:00Z",
        "counts": {"track": 30},
        "split": {"seed": 0},
    }
    fits = []

    def fit(params=SMALL):
        fits.append(params)
        return fit_als(random_train(), params).item_factors

    first = als_factors.fitted(run, manifest, SMALL.as_dict(), fit)
    again = als_factors.fitted(run, manifest, SMALL.as_dict(), fit)
    np.testing.assert_array_equal(first, again)
    assert len(fits) == 1
    # The thread count changes no factor: still the stored fit.
    als_factors.fitted(run, manifest, {**SMALL.as_dict(), "num_threads": 2}, fit)
    assert len(fits) == 1
    # Other settings, another graph (rebuilt: other created_at): fitted again, and stored.
    other = ALSParams(**{**SMALL.as_dict(), "random_state": 4})
    with caplog.at_level("INFO"):
        als_factors.fitted(run, manifest, other.as_dict(), lambda: fit(other))
    assert len(fits) == 2 and "fitted on another als" in caplog.text
    rebuilt = {**manifest, "created_at": "2026-01-02T00:00:00Z"}
    als_factors.fitted(run, rebuilt, other.as_dict(), lambda: fit(other))
    assert len(fits) == 3
    als_factors.fitted(run, rebuilt, other.as_dict(), lambda: fit(other))
    assert len(fits) == 3
    # A damaged file is fitted again, not read.
    (tmp_path / "run" / als_factors.FILE).write_bytes(b"not a zip")
    als_factors.fitted(run, rebuilt, other.as_dict(), lambda: fit(other))
    assert len(fits) == 4
    # One flipped byte in the factors: the archive's CRC-32 names it; fitted again, said so.
    stored = tmp_path / "run" / als_factors.FILE
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x01
    stored.write_bytes(bytes(data))
    caplog.clear()
    with caplog.at_level("WARNING"):
        refitted = als_factors.fitted(run, rebuilt, other.as_dict(), lambda: fit(other))
    assert len(fits) == 5 and f"{als_factors.FILE} unreadable" in caplog.text and "fitting again" in caplog.text
    np.testing.assert_array_equal(refitted, als_factors.fitted(run, rebuilt, other.as_dict(), lambda: fit(other)))


def test_a_run_dir_that_cannot_be_written_costs_only_the_reuse(tmp_path, caplog):
    blocked = tmp_path / "file"
    blocked.write_text("a file where the run dir should be")
    manifest = {"schema_version": 9, "created_at": "x", "counts": {}, "split": {}}
    with caplog.at_level("WARNING"):
        factors = als_factors.fitted(str(blocked), manifest, SMALL.as_dict(), lambda: np.ones((30, 6), np.float32))
    assert factors.shape == (30, 6)
    assert "not stored" in caplog.text
