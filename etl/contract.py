"""The graph dir contract: the only interface between ``etl`` and ``trainer``.

Every table name, column name and dtype lives here, with ``SCHEMA_VERSION``. This module imports
nothing beyond the standard library so that the Spark job, the trainer and the tests can all
depend on it without pulling each other's stacks in.

Layout of a graph dir::

    manifest.json
    nodes/playlist/*.parquet   nodes/track/*.parquet   nodes/album/*.parquet   nodes/artist/*.parquet
    edges/playlist_track/*.parquet   edges/track_album/*.parquet   edges/track_artist/*.parquet

Ids are dense int64 ``0..N-1`` per node type; a node table row's id is its row's identity, and
the node tables double as the id maps (uri/pid <-> id).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

# Bump on any change to a table, column, dtype, or to the meaning of a value.
SCHEMA_VERSION = 1

MANIFEST = "manifest.json"

# Dtype names follow Arrow's (``str(pa.int64())`` == "int64", ``pa.string()`` == "string").
INT64, STRING, BOOL, DOUBLE = "int64", "string", "bool", "double"

# --- value vocabularies -------------------------------------------------------------------------
SPLIT_TRAIN, SPLIT_VAL, SPLIT_TEST = "train", "val", "test"
SPLITS = (SPLIT_TRAIN, SPLIT_VAL, SPLIT_TEST)

ROLE_TRAIN, ROLE_SEED, ROLE_HIDDEN = "train", "seed", "hidden"
ROLES = (ROLE_TRAIN, ROLE_SEED, ROLE_HIDDEN)
# Edges that message passing (and every feature) may see; hidden edges are ground truth only.
VISIBLE_ROLES = (ROLE_TRAIN, ROLE_SEED)


@dataclass(frozen=True)
class SeedCategory:
    """A RecSys Challenge 2018 style hold-out category.

    ``num_seeds`` tracks are visible (the first ones, or a seeded random choice when
    ``random``); a playlist is only eligible when it has at least ``min_tracks`` tracks, so that
    every held-out playlist keeps hidden tracks to score against.
    """

    name: str
    num_seeds: int
    random: bool
    min_tracks: int


SEED_CATEGORIES = (
    SeedCategory("title_only", 0, False, 10),
    SeedCategory("first_1", 1, False, 10),
    SeedCategory("first_5", 5, False, 10),
    SeedCategory("first_10", 10, False, 20),
    SeedCategory("first_25", 25, False, 40),
    SeedCategory("first_100", 100, False, 150),
    SeedCategory("random_25", 25, True, 40),
    SeedCategory("random_100", 100, True, 150),
)
SEED_CATEGORY_BY_NAME = {c.name: c for c in SEED_CATEGORIES}

# --- tables -------------------------------------------------------------------------------------
# Structural features, computed on the message-passing graph (train + seed edges, undirected,
# with track-album and track-artist edges): ``deg_<neighbour type>`` per edge type,
# ``hop2_walks`` = sum of neighbours' degrees, ``hop2_reach`` = distinct nodes within 2 hops,
# the node itself included. hop2 columns are null when the job ran with ``--hop2 off``.
HOP2_COLUMNS = {"hop2_walks": INT64, "hop2_reach": INT64}

TABLES: dict[str, dict[str, str]] = {
    "nodes/playlist": {
        "playlist_id": INT64,
        "pid": INT64,
        "name": STRING,
        "split": STRING,
        "seed_category": STRING,  # null for train playlists
        "num_followers": INT64,
        "collaborative": BOOL,
        "num_edits": INT64,
        "modified_at": INT64,
        "num_tracks": INT64,  # as published (the challenge set gives it too)
        # Recomputed from visible tracks, so held-out playlists do not leak hidden ones:
        "num_albums": INT64,
        "num_artists": INT64,
        "duration_ms": INT64,
        "deg_track": INT64,
        **HOP2_COLUMNS,
    },
    "nodes/track": {
        "track_id": INT64,
        "track_uri": STRING,
        "track_name": STRING,
        "duration_ms": INT64,
        "album_id": INT64,
        "artist_id": INT64,
        "deg_playlist": INT64,
        **HOP2_COLUMNS,
    },
    "nodes/album": {
        "album_id": INT64,
        "album_uri": STRING,
        "album_name": STRING,
        "deg_track": INT64,
        **HOP2_COLUMNS,
    },
    "nodes/artist": {
        "artist_id": INT64,
        "artist_uri": STRING,
        "artist_name": STRING,
        "deg_track": INT64,
        **HOP2_COLUMNS,
    },
    "edges/playlist_track": {
        "playlist_id": INT64,
        "track_id": INT64,
        "pos": INT64,
        "role": STRING,
    },
    "edges/track_album": {"track_id": INT64, "album_id": INT64},
    "edges/track_artist": {"track_id": INT64, "artist_id": INT64},
}

NODE_TYPES = ("playlist", "track", "album", "artist")
ID_COLUMN = {t: f"{t}_id" for t in NODE_TYPES}
KEY_COLUMN = {"playlist": "pid", "track": "track_uri", "album": "album_uri", "artist": "artist_uri"}

# (source type, table, destination type); the trainer adds the reverse of each.
EDGE_TYPES = (
    ("playlist", "edges/playlist_track", "track"),
    ("track", "edges/track_album", "album"),
    ("track", "edges/track_artist", "artist"),
)

# Numeric node features the trainer feeds the model (log1p, then standardised with the
# manifest's ``feature_stats``); booleans count as 0/1.
FEATURE_COLUMNS: dict[str, tuple[str, ...]] = {
    "playlist": (
        "num_followers",
        "collaborative",
        "num_edits",
        "num_tracks",
        "num_albums",
        "num_artists",
        "duration_ms",
        "deg_track",
        "hop2_walks",
        "hop2_reach",
    ),
    "track": ("duration_ms", "deg_playlist", "hop2_walks", "hop2_reach"),
    "album": ("deg_track", "hop2_walks", "hop2_reach"),
    "artist": ("deg_track", "hop2_walks", "hop2_reach"),
}

# Keys every manifest.json carries (the ETL may add more).
MANIFEST_KEYS = (
    "schema_version",  # int, == SCHEMA_VERSION
    "created_at",  # ISO 8601 UTC
    "input",  # {"files": [{"path", "size"}], "skipped_files": [...]}
    "counts",  # {table: rows} for every table in TABLES, plus input entry counts
    "dropped",  # {reason: {"count": n, "examples": [...]}}
    "validation",  # {rule: {"count": n, "examples": [pid, ...]}}
    "split",  # {"seed", "num_val", "num_test", "categories": {name: count}}
    "hop2",  # {"mode": "exact"|"hll"|"off", "relative_error": float|None}
    "feature_stats",  # {node type: {column: {"mean", "std"}}} of log1p(value)
    "timings",  # {stage: seconds}
    "spark",  # {"version", "master", "conf": {...}}
)


class ContractError(ValueError):
    """A graph dir does not match this contract."""


def check_columns(table: str, actual: dict[str, str]) -> None:
    """Raise ContractError naming every column of ``table`` that is missing or mistyped.

    ``actual`` maps column name to Arrow dtype name (``{f.name: str(f.type) for f in schema}``).
    Extra columns are allowed; the contract only says what must be there.
    """
    if table not in TABLES:
        raise ContractError(f"unknown table {table!r}; contract tables are {sorted(TABLES)}")
    problems = []
    for column, dtype in TABLES[table].items():
        if column not in actual:
            problems.append(f"column {column} is missing")
        elif _normalise(actual[column]) != dtype:
            problems.append(f"column {column} is {actual[column]}, contract says {dtype}")
    if problems:
        raise ContractError(
            f"{table}: {'; '.join(problems)}; found columns {sorted(actual)} (schema version {SCHEMA_VERSION})"
        )


def check_manifest(manifest: dict, where: str = MANIFEST) -> None:
    """Raise ContractError if a parsed manifest is of another schema version or incomplete."""
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ContractError(
            f"{where}: schema_version is {version!r}, this code reads {SCHEMA_VERSION}; "
            "rebuild the graph dir with this version's etl.job"
        )
    missing = [k for k in MANIFEST_KEYS if k not in manifest]
    if missing:
        raise ContractError(f"{where}: missing keys {missing}; found {sorted(manifest)}")


def load_manifest(text: str, where: str = MANIFEST) -> dict:
    """Parse and check manifest JSON text."""
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as e:
        raise ContractError(f"{where}: not valid JSON ({e})") from None
    check_manifest(manifest, where)
    return manifest


def _normalise(dtype: str) -> str:
    # Arrow spells some types two ways depending on how the file was written.
    return {"large_string": STRING, "boolean": BOOL, "float64": DOUBLE}.get(dtype, dtype)
