"""The RecSys 2018 metrics on hand-computed cases, and the vectorised form against the reference."""

import math

import numpy as np
import pytest

from trainer.evaluation.metrics import METRICS, batch_metrics, playlist_metrics, summarise

# Artists: tracks 1, 2, 3, 5 by artist 0 ("A"), 4 by 1 ("B"), 6..9 by 2 ("C").
ARTIST = {1: 0, 2: 0, 3: 0, 5: 0, 4: 1, 6: 2, 7: 2, 8: 2, 9: 2}
ARTIST_ARRAY = np.array([2, 0, 0, 0, 1, 0, 2, 2, 2, 2] + [2] * 1000)


def both(recommended, truth):
    """The reference result, after checking that the batch form agrees with it."""
    ref = playlist_metrics(recommended, truth, ARTIST_ARRAY)
    ranked = np.array([recommended], dtype=np.int64)
    batch = batch_metrics(ranked, np.array([0, len(truth)]), np.array(truth), ARTIST_ARRAY)
    for m in METRICS:
        assert batch[m][0] == pytest.approx(ref[m], abs=1e-12), m
    return ref


def test_no_hit_clicks_51_ndcg_0():
    out = both([6, 7, 8], [1, 2])
    assert out["clicks"] == 51
    assert out["ndcg"] == 0.0
    assert out["r_precision_track"] == 0.0
    assert out["recall@500"] == 0.0


def test_hit_at_rank_1_and_rank_2_both_weigh_1():
    assert both([1, 7], [1, 4])["ndcg"] == 1.0
    assert both([7, 1], [1, 4])["ndcg"] == 1.0
    assert both([7, 1], [1, 4])["clicks"] == 0


def test_ndcg_normalised_by_hits_found():
    # Hits at ranks 1 and 3; |G| = 3 but IDCG is over the 2 hits: 1 + 1/log2(2) = 2.
    out = both([1, 7, 2], [1, 2, 4])
    assert out["ndcg"] == pytest.approx((1 + 1 / math.log2(3)) / 2)


def test_clicks_from_first_hit_rank():
    pad = list(range(100, 130))  # tracks never in the ground truth
    assert both(pad[:9] + [1], [1])["clicks"] == 0  # rank 10
    assert both(pad[:10] + [1], [1])["clicks"] == 1  # rank 11
    assert both(pad[:20] + [1], [1])["clicks"] == 2  # rank 21


def test_duplicate_recommendation_counts_once():
    out = both([1, 1, 2], [1, 2])
    assert out["r_precision_track"] == 0.5  # R[1:2] = {1}
    assert out["ndcg"] == pytest.approx((1 + 1 / math.log2(3)) / 2)
    assert out["recall@10"] == 1.0


def test_duplicate_ground_truth_counts_once():
    assert both([1, 4], [1, 1, 4])["r_precision_track"] == 1.0


def test_artist_credit_for_an_unmatched_truth_track():
    # G = {1 (A), 2 (A), 4 (B)}; R[1:3] = 1 (match), 5 (A, credit for 2), 6 (C, nothing).
    out = both([1, 5, 6], [1, 2, 4])
    assert out["r_precision_track"] == pytest.approx(1 / 3)
    assert out["r_precision"] == pytest.approx((1 + 0.25) / 3)


def test_artist_credit_capped_by_unmatched_truth_tracks_of_that_artist():
    # G = {1 (A), 4 (B)}; two A recommendations, one A track in G: one credit.
    assert both([5, 3], [1, 4])["r_precision"] == pytest.approx(0.25 / 2)


def test_track_match_takes_precedence_over_artist_credit():
    assert both([1, 2], [1, 2])["r_precision"] == 1.0
    # G = {1, 2} both by A: 1 matches; 5 (A) is credited for the unmatched 2.
    assert both([5, 1], [1, 2])["r_precision"] == pytest.approx(0.625)
    # Once 1 and 2 are both matched, no A track is left to credit.
    assert both([1, 2, 5], [1, 2, 3])["r_precision"] == pytest.approx((2 + 0.25) / 3)
    assert both([5, 1, 2], [1, 2, 3])["r_precision"] == pytest.approx((2 + 0.25) / 3)


def test_artist_credit_only_within_first_g_recommendations():
    assert both([6, 7, 5], [1, 2])["r_precision"] == 0.0


def test_recall_at_cutoffs():
    ranked = [1000 + i for i in range(500)]
    for rank, track in ((5, 1), (20, 2), (70, 3), (400, 4)):
        ranked[rank - 1] = track
    out = both(ranked, [1, 2, 3, 4])
    assert [out[f"recall@{k}"] for k in (10, 50, 100, 500)] == [0.25, 0.5, 0.75, 1.0]


def test_only_first_500_count():
    ranked = [1000 + i for i in range(600)]
    ranked[549] = 1
    assert both(ranked, [1])["clicks"] == 51


def test_empty_slots_are_never_hits():
    out = both([-1, -1, 1, -1], [1, 4])
    assert out["clicks"] == 0 and out["r_precision_track"] == 0.0 and out["recall@10"] == 0.5


def test_empty_ground_truth_is_an_error():
    with pytest.raises(ValueError, match="ground truth is empty"):
        playlist_metrics([1], [], ARTIST)
    with pytest.raises(ValueError, match=r"rows \[1\] have an empty ground truth"):
        batch_metrics(np.array([[1], [2]]), np.array([0, 1, 1]), np.array([1]), ARTIST_ARRAY)


def test_batch_matches_reference_on_random_lists():
    rng = np.random.default_rng(0)
    num_tracks, num_artists = 300, 25
    track_artist = rng.integers(0, num_artists, num_tracks)
    rows, indptr, truth = [], [0], []
    for _ in range(60):
        size = int(rng.integers(1, 40))
        g = rng.choice(num_tracks, size, replace=False)
        truth.extend(g.tolist() + g[: size // 4].tolist())  # some duplicates in the truth
        indptr.append(len(truth))
        # A mix of hits, same-artist tracks, repeats and empty slots.
        r = rng.integers(-1, num_tracks, 120)
        rows.append(r)
    ranked = np.stack(rows)
    batch = batch_metrics(ranked, np.array(indptr), np.array(truth), track_artist)
    for b in range(len(rows)):
        ref = playlist_metrics(ranked[b], truth[indptr[b] : indptr[b + 1]], track_artist)
        for m in METRICS:
            assert batch[m][b] == pytest.approx(ref[m], abs=1e-12), (b, m)
    assert (batch["r_precision"] >= batch["r_precision_track"]).all()
    assert (batch["r_precision"] <= 1.0).all()
    assert (batch["r_precision"] > batch["r_precision_track"]).any()  # artist credit exercised


def test_summarise_means_from_sums():
    sums = {m: 3.0 for m in METRICS}
    out = summarise(sums, 4)
    assert out["ndcg"] == 0.75 and out["num_playlists"] == 4
    assert math.isnan(summarise(sums, 0)["ndcg"])
