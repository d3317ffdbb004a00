"""HyperLogLog 2-hop reach stays within its stated error of the exact count."""

import math
import random

import pytest
from etl_oracle import hop2

from etl import features

pytestmark = pytest.mark.slow

# The bound this test holds the hll mode to (and the manifest's relative_error states): the
# sketch's relative standard error is 1.04 / sqrt(2**12) = 1.6%; the exact terms of the sum only
# shrink it. 99% of nodes must be within 4 standard errors, the RMS within 1.5 of them.
SE = features.HLL_RELATIVE_ERROR


@pytest.fixture(scope="module")
def popular_graph():
    """600 playlists x 40 tracks over a Zipf catalogue of 3,000 tracks: 2-hop sets of thousands."""
    rng = random.Random(7)
    n_tracks, n_albums, n_artists = 3000, 600, 200
    weights = [1 / (i + 1) ** 0.8 for i in range(n_tracks)]
    edges = set()
    for p in range(600):
        for t in rng.choices(range(n_tracks), weights, k=40):
            edges.add((p, t))
    tracks = [(t, t % n_albums, t % n_artists, 200_000) for t in range(n_tracks)]
    return sorted(edges), tracks, n_albums, n_artists


def test_hll_reach_is_within_the_stated_bound_of_exact(spark, popular_graph):
    import networkx as nx

    edges, tracks, n_albums, n_artists = popular_graph
    pl = spark.createDataFrame([(p, "train") for p in range(600)], "playlist_id long, split string")
    tr = spark.createDataFrame(tracks, "track_id long, album_id long, artist_id long, duration_ms long")
    al = spark.createDataFrame([(a,) for a in range(n_albums)], "album_id long")
    ar = spark.createDataFrame([(a,) for a in range(n_artists)], "artist_id long")
    ed = spark.createDataFrame([(p, t, "train") for p, t in edges], "playlist_id long, track_id long, role string")
    out = features.with_structural_features(pl, tr, al, ar, ed, "hll")

    g = nx.Graph()
    seen = {t for _, t in edges}
    g.add_edges_from((("playlist", p), ("track", t)) for p, t in edges)
    g.add_edges_from((("track", t), ("album", a)) for t, a, _, _ in tracks if t in seen)
    g.add_edges_from((("track", t), ("artist", r)) for t, _, r, _ in tracks if t in seen)
    errors = []
    for kind, df in zip(("playlist", "track", "album", "artist"), out):
        for r in df.select(f"{kind}_id", "hop2_walks", "hop2_reach").collect():
            v = (kind, r[0])
            if v not in g:
                assert (r.hop2_walks, r.hop2_reach) == (0, 1)
                continue
            walks, reach = hop2(g, v)
            assert r.hop2_walks == walks  # walks are exact in every mode
            errors.append(abs(r.hop2_reach - reach) / reach)
    errors.sort()
    big = max(hop2(g, ("track", 0))[1], hop2(g, ("playlist", 0))[1])
    assert big > 1000, "the graph must be big enough for the sketches to leave their exact modes"
    assert errors[int(0.99 * len(errors))] <= 4 * SE, errors[-10:]
    assert math.sqrt(sum(e * e for e in errors) / len(errors)) <= 1.5 * SE
    assert errors[-1] > 0, "hll mode should estimate, not count exactly"
