"""Write a RecSys Challenge 2018 submission for a ``challenge_set.json``.

    python -m trainer.submit --graph DIR --run RUN_DIR --challenge challenge_set.json \\
        --out submission.csv.gz --team NAME --email ADDR [--method gnn|itemknn|als|popularity]

Format (as the challenge's sample submission): a ``team_info,NAME,EMAIL`` line, then one line
per challenge playlist: ``pid, uri_1, …, uri_500`` — exactly 500 distinct track URIs, none of
them a seed of that playlist. Challenge playlists are not nodes of the graph: their seed URIs
are looked up in the catalogue (unknown ones are ignored and counted); with gnn the query is
built from the seed tracks as the model embeds a playlist node (``trainer.gnn.inference.seed_query``;
the mean of their embeddings for ``conv=sage``); a playlist left without seeds gets the title
model (``trainer.evaluation.title``).
The file is validated in memory, then written atomically (temporary file, then rename); the
challenge set and the output may be local paths or fsspec URLs.
"""

from __future__ import annotations

import trainer.hugepages  # noqa: F401  (first, before torch: it asks torch for huge pages)

# isort: split

import gzip
import json
import sys

import numpy as np
from tqdm import tqdm

from trainer import cli, dist
from trainer.evaluation.metrics import K
from trainer.evaluation.scoring import Queries, rank
from trainer.io import storage
from trainer.io.catalogue import Catalogue, load_catalogue, normalise_title
from trainer.methods import build_scorers, default_method, source_of


def read_challenge(path: str) -> list[dict]:
    """The ``playlists`` of a challenge set, checked for what a submission needs."""
    try:
        data = json.loads(storage.read_text(path))
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"--challenge {path}: cannot read JSON ({e})") from None
    playlists = data.get("playlists") if isinstance(data, dict) else None
    if isinstance(playlists, list) and not playlists:
        raise ValueError(f"--challenge {path}: its 'playlists' list is empty: nothing to submit")
    if not isinstance(playlists, list):
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"--challenge {path}: no 'playlists' list (keys: {keys})")
    pids = [p.get("pid") for p in playlists]
    bad = [
        i
        for i, p in enumerate(playlists)
        if not isinstance(p.get("pid"), int) or not isinstance(p.get("tracks", []), list)
    ]
    if bad:
        raise ValueError(f"--challenge {path}: playlists at positions {bad[:10]} lack an int pid or a tracks list")
    if len(set(pids)) != len(pids):
        dup = sorted({x for x in pids if pids.count(x) > 1})[:10]
        raise ValueError(f"--challenge {path}: duplicate pids {dup}")
    return playlists


def challenge_queries(cat: Catalogue, playlists: list[dict]) -> tuple[Queries, list[set[str]], int]:
    """Queries from challenge playlists; also every playlist's seed URIs and the unknown count."""
    index = cat.track_index()
    seeds, titles, seed_uris, unknown = [], [], [], 0
    for p in playlists:
        uris = [t["track_uri"] for t in p.get("tracks", [])]
        known = [index[u] for u in uris if u in index]
        unknown += len(uris) - len(known)
        seeds.append(np.unique(np.array(known, dtype=np.int64)))
        titles.append(normalise_title(p.get("name")))
        seed_uris.append(set(uris))
    return Queries.from_lists(seeds, titles), seed_uris, unknown


def check_submission(rows: list[tuple[int, list[str]]], pids: list[int], seed_uris: list[set[str]]) -> None:
    """Raise ValueError unless every challenge pid has exactly one row of 500 distinct non-seed URIs."""
    if [pid for pid, _ in rows] != pids:
        raise ValueError("submission rows do not follow the challenge pids one to one")
    for (pid, uris), seeds in zip(rows, seed_uris):
        if len(uris) != K:
            raise ValueError(f"pid {pid}: {len(uris)} tracks, a submission needs exactly {K}")
        if len(set(uris)) != K:
            raise ValueError(f"pid {pid}: duplicate tracks in its {K}")
        if seeds & set(uris):
            raise ValueError(f"pid {pid}: recommends its own seed tracks {sorted(seeds & set(uris))[:3]}")


def write_submission(out: str, team: str, email: str, rows: list[tuple[int, list[str]]]) -> None:
    """Write the CSV (gzip when ``out`` ends in .gz) atomically."""
    for name, value in (("--team", team), ("--email", email)):
        if not value or "," in value or "\n" in value:
            raise ValueError(f"{name} must be non-empty without commas or newlines, got {value!r}")
    with storage.atomic_open(out) as raw:
        sink = gzip.GzipFile(fileobj=raw, mode="wb") if out.endswith(".gz") else raw
        sink.write(f"team_info,{team},{email}\n".encode())
        for pid, uris in rows:
            sink.write((", ".join([str(pid), *uris]) + "\n").encode())
        if sink is not raw:
            sink.close()  # writes the gzip trailer; the file itself is closed by atomic_open


def submit(
    graph_dir: str,
    run_dir: str,
    challenge: str,
    out: str,
    team: str,
    email: str,
    method: str | None = None,
    batch_size: int = 256,
    chunk_size: int = 1 << 17,
    fold_in_steps: int = 0,
    device: str = "auto",
) -> dict:
    """Rank 500 tracks for every challenge playlist, validate, write; returns a summary."""
    storage.check_writable(out, "--out")  # before ranking every playlist, not after
    playlists = read_challenge(challenge)
    cat = load_catalogue(graph_dir)
    if method is None:
        method = default_method(run_dir)
    queries, seed_uris, unknown = challenge_queries(cat, playlists)
    if cat.num_tracks < K + int(queries.num_seeds().max(initial=0)):
        raise ValueError(
            f"graph {graph_dir} has {cat.num_tracks} tracks: too few to recommend {K} non-seed tracks per playlist"
        )
    device = dist.pick_device(device)
    scorers, fallback = build_scorers(cat, run_dir, [method], device, fold_in_steps=fold_in_steps)
    rows = []
    for lo in tqdm(range(0, len(queries), batch_size), desc="submit"):
        part = queries.take(np.arange(lo, min(lo + batch_size, len(queries))))
        ids = rank(scorers[method], fallback, part, cat.num_tracks, K, chunk_size, device)
        for b, row in enumerate(ids):
            rows.append((playlists[lo + b]["pid"], cat.track_uri[row[row >= 0]].tolist()))
    check_submission(rows, [p["pid"] for p in playlists], seed_uris)
    summary = {
        "playlists": len(rows),
        "method": method,
        "gnn_checkpoint": source_of(scorers),
        "graph": graph_dir,
        "unknown_seed_uris": unknown,
        "title_fallback": int((queries.num_seeds() == 0).sum()),
        # neither a known seed nor a title with words: these get the most popular tracks overall
        "popularity_fallback": int(((queries.num_seeds() == 0) & np.array([not t for t in queries.titles])).sum()),
        "out": str(out),
    }
    write_submission(out, team, email, rows)
    # The CSV's format is the challenge's: what made it goes beside it.
    storage.atomic_write_json(f"{out}.json", summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    p = cli.parser("trainer.submit", __doc__)
    cli.add_graph(p)
    cli.add_run(p)
    p.add_argument("--challenge", required=True, help="challenge_set.json")
    p.add_argument("--out", required=True, help="submission.csv or submission.csv.gz")
    p.add_argument("--team", required=True)
    p.add_argument("--email", required=True)
    cli.add_method(p)
    p.add_argument(
        "--fold-in-steps",
        type=cli.count(0),
        default=0,
        help="gnn: fit each challenge playlist's input projection to its seeds for this"
        " many steps (it helped the 3-layer model, not the 6-layer default, on the real"
        " dev set); each step costs about what ranking the catalogue once does",
    )
    cli.add_device(p)
    args = p.parse_args(argv)

    def body():
        summary = submit(
            args.graph,
            args.run,
            args.challenge,
            args.out,
            args.team,
            args.email,
            args.method,
            fold_in_steps=args.fold_in_steps,
            device=args.device,
        )
        print(
            f"wrote {summary['out']}: {summary['playlists']} playlists by {summary['method']};"
            f" {summary['unknown_seed_uris']} seed URIs not in the graph ignored;"
            f" {summary['title_fallback']} playlists ranked from their title alone, {summary['popularity_fallback']}"
            " of them (no known seed, no usable title) by global popularity"
        )

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
