"""The title model every method shares for playlists without seeds (``trainer.evaluation.title``):
exact-title counts over visible edges, then tracks whose artist, album or track name holds every
word of the title, then popularity; each tier checked against a plain-Python count."""

from __future__ import annotations

import os
import sys
from collections import Counter

import numpy as np
import pytest
from graphdir_fixture import MPD_SAMPLE, REPO_ROOT, load_mpd_sample
from test_evaluate import sample, synth  # noqa: F401  (fixtures)

from etl import contract
from trainer.evaluation.baselines import popularity_counts
from trainer.evaluation.protocol import held_out
from trainer.evaluation.scoring import Queries, top_k
from trainer.evaluation.title import NameIndex, TitleModel
from trainer.io.catalogue import load_catalogue, normalise_title, track_names
from trainer.methods import build_scorers

needs_sample = pytest.mark.skipif(not os.path.exists(MPD_SAMPLE), reason=f"real MPD sample not found at {MPD_SAMPLE}")


@pytest.fixture(scope="module")
def title_model(sample):
    """The sample graph's catalogue, visible popularity and title model."""
    cat = load_catalogue(sample)
    visible = cat.edges(contract.VISIBLE_ROLES)
    pop = popularity_counts(visible)
    return cat, visible, pop, TitleModel(visible, cat.playlist_title, pop, track_names(sample))


@pytest.fixture(scope="module")
def raw_names():
    """Track URI -> its (artist, album, track) names normalised, from the sample's JSON."""
    return {
        t["track_uri"]: tuple(normalise_title(t[k]) for k in ("artist_name", "album_name", "track_name"))
        for p in load_mpd_sample()
        for t in p["tracks"]
    }


def _name_oracle(title: str, raw_names: dict, uris) -> set[int]:
    words = set(title.split())
    return {i for i, u in enumerate(uris) if any(words <= set(name.split()) for name in raw_names[u])}


@needs_sample
def test_track_names_are_the_json_names_normalised(sample, raw_names):
    cat = load_catalogue(sample)
    names = track_names(sample)
    assert list(names) == ["artist", "album", "track"]
    for field, (codes, distinct) in enumerate(names.values()):
        assert len(codes) == cat.num_tracks
        assert [distinct[c] for c in codes] == [raw_names[u][field] for u in cat.track_uri]


@needs_sample
def test_name_index_finds_every_track_whose_one_name_holds_every_word(sample, raw_names):
    cat = load_catalogue(sample)
    index = NameIndex(track_names(sample))
    artists = Counter(raw_names[u][0] for u in cat.track_uri)
    words = Counter(w for u in cat.track_uri for name in raw_names[u] for w in set(name.split()))
    titles = [
        artists.most_common(1)[0][0],
        words.most_common(1)[0][0],
        *[w for w, _ in words.most_common(40)[-3:]],
        # two artists' names: each in some name, never together in one (no match)
        next(
            f"{a} {b}"
            for a, b in zip(artists, list(artists)[1:])
            if not _name_oracle(f"{a} {b}", raw_names, cat.track_uri)
        ),
        "zzyzx",
        "",
    ]
    found = 0
    for title in titles:
        want = _name_oracle(title, raw_names, cat.track_uri) if title else set()
        got = index.matches(title)
        assert set(got.tolist()) == want, title
        assert np.all(np.diff(got) > 0), "sorted, once each"
        found += len(want) > 0
    assert found >= 4


@needs_sample
def test_a_title_no_playlist_carries_ranks_its_name_matches_by_popularity(title_model, raw_names):
    cat, _, pop, model = title_model
    artists = Counter(raw_names[u][0] for u, p in zip(cat.track_uri, pop) if p > 0)
    title = next(a for a, n in artists.most_common() if a not in set(cat.playlist_title) and n >= 3)
    want = _name_oracle(title, raw_names, cat.track_uri) & set(np.flatnonzero(pop > 0).tolist())
    query = Queries.from_lists([np.zeros(0, np.int64)], [title])
    ids, _ = top_k(model.batch(query), query, cat.num_tracks, 50, 64)
    ids = ids[0].tolist()
    assert set(ids[: len(want)]) == want  # the name tier, then the rest
    assert [pop[t] for t in ids[: len(want)]] == sorted((pop[t] for t in want), reverse=True)
    rest = [pop[t] for t in ids[len(want) :]]
    assert rest == sorted(rest, reverse=True)
    assert len(model.name_matches(title)) == len(want)


@needs_sample
def test_exact_title_tracks_come_before_name_matches(title_model, raw_names):
    cat, visible, pop, model = title_model
    checked = 0
    for title in sorted({t for t in cat.playlist_title if t}):
        counts = Counter(
            t for p in np.flatnonzero([t == title for t in cat.playlist_title]) for t in visible[p].indices.tolist()
        )
        named = _name_oracle(title, raw_names, cat.track_uri) & set(np.flatnonzero(pop > 0).tolist()) - set(counts)
        if not counts or not named:
            continue
        query = Queries.from_lists([np.zeros(0, np.int64)], [title])
        ids, _ = top_k(model.batch(query), query, cat.num_tracks, len(counts) + len(named), 64)
        ids = ids[0].tolist()
        assert set(ids[: len(counts)]) == set(counts), title
        assert [counts[t] for t in ids[: len(counts)]] == sorted(counts.values(), reverse=True)
        assert set(ids[len(counts) :]) == named, title
        checked += 1
    assert checked, "some sample title is also a word of some track's name"


def test_title_only_ranks_title_matches_first(synth):
    """The shared fallback counts every visible edge of the playlists with the query's title
    (training playlists' tracks, held-out playlists' seeds), never a hidden one."""
    cat = load_catalogue(synth)
    held = held_out(cat, contract.SPLIT_VAL)
    titled = [b for b in range(len(held)) if held.queries.num_seeds()[b] == 0]
    assert titled, "the fixture should hold title-only playlists"
    visible = cat.edges(contract.VISIBLE_ROLES)
    _, title = build_scorers(cat, "no-run-needed", ["popularity"], "cpu")
    sub = held.queries.take(np.array(titled))
    ids, _ = top_k(title.batch(sub), sub, cat.num_tracks, 500, 64)
    seeds_counted = 0
    for row, b in enumerate(titled):
        counts = Counter()
        for p in np.flatnonzero([t == held.queries.titles[b] for t in cat.playlist_title]):
            counts.update(visible[p].indices.tolist())
            seeds_counted += cat.playlist_split[p] != contract.SPLIT_TRAIN and visible[p].nnz > 0
        assert counts, "synthetic titles repeat, so another playlist shares the title"
        n = min(len(counts), 500)
        if len(counts) <= 500:  # every title match, then the rest
            assert set(ids[row][:n]) == set(counts)
        assert counts[ids[row][0]] == max(counts.values())
        got = [counts[t] for t in ids[row][:n]]
        assert got == sorted(got, reverse=True)
    assert seeds_counted, "some title is shared with a held-out playlist's seeds"


def test_title_models_bench_ranks_the_shared_fallback_as_evaluate_does(synth, capsys):
    sys.path.insert(0, os.path.join(REPO_ROOT, "bench"))
    import title_models  # bench/ scripts are not a package

    from trainer.evaluation.paired import per_playlist
    from trainer.evaluation.protocol import visible_catalogue

    title_models.main(["--graph", synth, "--split", "val", "--models", "exact_train,names,words,chars+smooth"])
    rows = {
        line.split(" | ")[0].lstrip("| "): line.split(" | ")[1:]
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("| ") and not line.startswith("| model")
    }
    assert set(rows) == {"exact_train", "names", "words", "chars+smooth"}
    cat = load_catalogue(synth)
    held = held_out(cat, contract.SPLIT_VAL)
    held = held.take(np.flatnonzero(held.queries.num_seeds() == 0))
    _, fallback = build_scorers(cat, "no-run-needed", ["popularity"], "cpu")
    product = per_playlist(cat.track_artist, held, {"title": fallback}, fallback, visible_catalogue(cat))["title"]
    assert rows["names"][0] == f"{product['r_precision'].mean():.4f}"
    assert rows["names"][1] == f"{product['ndcg'].mean():.4f}"


@needs_sample
def test_a_common_word_keeps_its_most_popular_name_matches(title_model, raw_names, monkeypatch):
    from trainer.evaluation import title as title_module

    cat, _, pop, model = title_model
    words = Counter(w for u, p in zip(cat.track_uri, pop) if p for name in raw_names[u] for w in set(name.split()))
    word = words.most_common(1)[0][0]
    want = sorted(
        _name_oracle(word, raw_names, cat.track_uri) & set(np.flatnonzero(pop > 0).tolist()), key=lambda t: -pop[t]
    )
    assert len(want) > 3
    monkeypatch.setattr(title_module, "MAX_NAME_MATCHES", 3)
    got = model.name_matches(word)
    assert len(got) == 3 and [pop[t] for t in got] == [pop[t] for t in want[:3]]
