"""Assemble ``manifest.json`` (pure: plain values in, a dict out) and check the accounting."""

from __future__ import annotations

import datetime as _dt
import json
import re

from etl.contract import MANIFEST_KEYS, SCHEMA_VERSION, check_manifest

# Spark conf keys worth recording; anything that may hold a credential is left out.
_CONF_PREFIXES = (
    "spark.master",
    "spark.app.name",
    "spark.driver.memory",
    "spark.executor.",
    "spark.sql.shuffle.partitions",
    "spark.sql.adaptive.",
    "spark.default.parallelism",
    "spark.submit.deployMode",
)
_SECRET = re.compile(r"secret|password|token|credential|key", re.IGNORECASE)


class AccountingError(AssertionError):
    """Rows in != rows out + rows dropped: the job lost or invented rows."""


def spark_conf_subset(conf: dict[str, str]) -> dict[str, str]:
    return {
        k: v
        for k, v in sorted(conf.items())
        if k.startswith(_CONF_PREFIXES) and not _SECRET.search(k) and "JavaOptions" not in k
    }


def check_accounting(counts: dict, dropped: dict) -> None:
    """Every input playlist and track entry is either written or dropped for a named reason."""
    problems = []
    for unit, out_key in (("playlists", "nodes/playlist"), ("entries", "edges/playlist_track")):
        gone = sum(d[unit] for d in dropped.values())
        if counts[f"input_{unit}"] != counts[out_key] + gone:
            problems.append(
                f"input {unit} {counts[f'input_{unit}']} != {out_key} rows {counts[out_key]}"
                f" + dropped {gone} ({ {r: d[unit] for r, d in dropped.items()} })"
            )
    if problems:
        raise AccountingError("row accounting failed: " + "; ".join(problems))


def build(**sections) -> dict:
    """The manifest: every ``MANIFEST_KEYS`` entry (checked), plus any extra sections given."""
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **sections,
    }
    check_manifest(manifest)
    ordered = {k: manifest[k] for k in MANIFEST_KEYS}
    ordered.update({k: v for k, v in manifest.items() if k not in ordered})
    return ordered


def dumps(manifest: dict) -> str:
    return json.dumps(manifest, indent=2, sort_keys=False, allow_nan=False) + "\n"
