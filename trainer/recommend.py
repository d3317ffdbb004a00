"""Top-K track recommendations for one playlist of the graph, a list of seed tracks, or a title.

    python -m trainer.recommend --graph DIR --run RUN_DIR --pid 123 [-k 10] [--method gnn]
    python -m trainer.recommend --graph DIR --run RUN_DIR --tracks spotify:track:…,spotify:track:…
    python -m trainer.recommend --graph DIR --run RUN_DIR --title "summer vibes"

Seeds are never recommended. ``--pid``: the playlist's visible tracks are the seeds; with gnn
the query is the playlist's own embedding. ``--tracks``: a list of URIs is not a node of the
graph, so with gnn the query is built from the seed tracks as the model embeds a playlist node
(``trainer.gnn.inference.seed_query``; the mean of their embeddings for ``conv=sage``). ``--title``
alone: the title model every method shares (the tracks most frequent in playlists with that
title, held-out playlists' seeds included; then tracks whose artist, album or track name holds
every word of it; ``trainer.evaluation.title``).
"""

from __future__ import annotations

import trainer.hugepages  # noqa: F401  (first, before torch: it asks torch for huge pages)

# isort: split

import sys

import numpy as np

from etl import contract
from trainer import cli, dist
from trainer.evaluation.scoring import Queries, rank
from trainer.io.catalogue import Catalogue, load_catalogue, normalise_title, track_details
from trainer.methods import build_scorers, default_method, source_of


def seeds_from_uris(cat: Catalogue, uris: list[str]) -> np.ndarray:
    """Track ids of ``uris``; raises ValueError naming every URI the graph does not hold."""
    index = cat.track_index()
    unknown = [u for u in uris if u not in index]
    if unknown:
        shown = ", ".join(unknown[:10]) + (f" (and {len(unknown) - 10} more)" if len(unknown) > 10 else "")
        raise ValueError(f"--tracks: {len(unknown)} track URI(s) not in graph {cat.path}: {shown}")
    return np.unique(np.array([index[u] for u in uris], dtype=np.int64))


def query_for_pid(cat: Catalogue, pid: int) -> Queries:
    """A graph playlist as a query: its visible tracks as seeds, its title, its id."""
    found = np.flatnonzero(cat.playlist_pid == pid)
    if not len(found):
        raise ValueError(
            f"--pid: pid {pid} is not in graph {cat.path} ({cat.num_playlists} playlists,"
            f" pids {cat.playlist_pid.min()}..{cat.playlist_pid.max()})"
        )
    playlist = int(found[0])
    # One playlist's edges, without the whole playlist × track matrix (seconds at 1M playlists).
    visible = (cat.edge_playlist == playlist) & np.isin(
        cat.edge_role, [contract.ROLES.index(r) for r in contract.VISIBLE_ROLES]
    )
    return Queries.from_lists([np.unique(cat.edge_track[visible])], [cat.playlist_title[playlist]], [playlist])


def title_note(raw_title: str | None, queries: Queries, fallback) -> str | None:
    """What the title model did for a query without seeds, when no playlist carries the title."""
    if queries.num_seeds()[0] > 0:
        return None
    title = queries.titles[0]
    if not title:
        return (
            f"the title {raw_title or ''!r} has no usable words (letters or digits) and there are "
            "no seed tracks: these are the most popular tracks overall"
        )
    if title in fallback.index:
        return None
    named = len(fallback.name_matches(title))
    if named:
        return (
            f"no playlist of the graph is titled {title!r} and there are no seed tracks: first the {named:,} "
            "track(s) whose artist, album or track name holds every word of it, then the most popular tracks"
        )
    return (
        f"no playlist of the graph is titled {title!r}, no artist, album or track name holds every word of it "
        "and there are no seed tracks: these are the most popular tracks overall"
    )


def shortfall_note(found: int, k: int, num_tracks: int, num_seeds: int) -> str | None:
    """Says so when the catalogue ran out before ``k`` tracks."""
    if found >= k:
        return None
    return (
        f"only {found} tracks to recommend, not the {k} asked for (-k): the graph holds "
        f"{num_tracks} tracks, {num_seeds} of them seeds"
    )


def recommend(
    graph_dir: str,
    run_dir: str,
    *,
    pid: int | None = None,
    tracks: list[str] | None = None,
    title: str | None = None,
    k: int = 10,
    method: str | None = None,
    chunk_size: int = 1 << 17,
    notes: list[str] | None = None,
    fold_in_steps: int = 0,
    device: str = "auto",
) -> list[dict]:
    """Top-``k`` tracks (id, uri, name, artist, rank) for one query; what the user should know
    about the answer (a title that could not be used, fewer than ``k`` tracks) goes to ``notes``."""
    if pid is not None and (tracks or title):
        raise ValueError("--pid goes alone: the playlist brings its own tracks and title")
    if pid is None and not tracks and not title:
        raise ValueError("give one of --pid, --tracks or --title (--title may go with --tracks)")
    if k < 1:
        raise ValueError(f"-k must be >= 1, got {k}")
    cat = load_catalogue(graph_dir)
    if pid is not None:
        queries = query_for_pid(cat, pid)
    else:
        seeds = seeds_from_uris(cat, tracks) if tracks else np.zeros(0, np.int64)
        queries = Queries.from_lists([seeds], [normalise_title(title)])
    if method is None:
        method = default_method(run_dir)
    device = dist.pick_device(device)
    scorers, fallback = build_scorers(cat, run_dir, [method], device, fold_in_steps=fold_in_steps)
    ids = rank(scorers[method], fallback, queries, cat.num_tracks, k, chunk_size, device)[0]
    ids = ids[ids >= 0]
    if notes is not None:
        raw_title = title if pid is None else cat.playlist_title[int(queries.playlist_ids[0])]
        found = [
            title_note(raw_title, queries, fallback),
            shortfall_note(len(ids), k, cat.num_tracks, int(queries.num_seeds()[0])),
        ]
        notes.extend(n for n in found if n)
        if method == "gnn":
            source = source_of(scorers)
            notes.append(f"ranked by the gnn of checkpoint {source['checkpoint_id']} ({source['checkpoint']})")
    details = track_details(graph_dir, ids)
    return [{"rank": r, **d} for r, d in enumerate(details, start=1)]


def main(argv: list[str] | None = None) -> int:
    p = cli.parser("trainer.recommend", __doc__)
    cli.add_graph(p)
    cli.add_run(p)
    p.add_argument("--pid", type=int, help="a playlist of the graph")
    p.add_argument("--tracks", help="comma-separated seed track URIs")
    p.add_argument("--title", help="playlist title (used when there are no seeds)")
    p.add_argument("-k", type=cli.count(1), default=10, help="tracks to list (default 10)")
    cli.add_method(p)
    p.add_argument(
        "--fold-in-steps",
        type=cli.count(0),
        default=0,
        help="gnn with --tracks: fit the new playlist's input projection to its seeds for"
        " this many steps, as a graph playlist's ID row was (0: the average playlist's;"
        " with the 6-layer default, fitting did not rank better on the real dev set)",
    )
    cli.add_device(p)
    args = p.parse_args(argv)
    tracks = [u.strip() for u in args.tracks.split(",") if u.strip()] if args.tracks else None

    def body():
        notes: list[str] = []
        rows = recommend(
            args.graph,
            args.run,
            pid=args.pid,
            tracks=tracks,
            title=args.title,
            k=args.k,
            method=args.method,
            notes=notes,
            fold_in_steps=args.fold_in_steps,
            device=args.device,
        )
        for r in rows:
            print(f"{r['rank']:>4}  {r['track_name']}  —  {r['artist_name']}  ({r['track_uri']})")
        for note in notes:
            cli.note(note)

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
