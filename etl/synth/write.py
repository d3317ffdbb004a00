"""The generator's output, published whole: MPD slices (and a challenge set) written in parallel
(:func:`generate`), or a contract graph dir straight from the generator (:func:`write_graph`)."""

from __future__ import annotations

import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from multiprocessing import get_context

from etl.contract import MANIFEST
from etl.synth.challenge import CHALLENGE_FILE, CHALLENGE_HOLDOUTS_FILE, challenge_set
from etl.synth.graphdir import synthetic_graph_dir
from etl.synth.slices import PLAYLISTS_PER_SLICE, write_slice

OUTPUT_PREFIXES = ("mpd.slice.", "challenge_set")


def _write_slice_task(args: tuple) -> tuple[str, int, int]:
    return write_slice(*args)


class SynthError(Exception):
    """Bad input or an unusable output path; the message names what is wrong."""


def _is_output(name: str) -> bool:
    return name.startswith(OUTPUT_PREFIXES)


def _prepare(out: str, overwrite: bool) -> str:
    """Check the output dir and make a temporary dir next to it; returns the temporary dir."""
    out = os.path.abspath(out)
    if os.path.exists(out):
        if not os.path.isdir(out):
            raise SynthError(f"--out {out} exists and is not a directory")
        others = sorted(os.listdir(out))
        if others and not overwrite:
            raise SynthError(
                f"--out {out} is not empty ({len(others)} entries, e.g. {others[0]!r}); "
                f"pass --overwrite to replace the synthetic MPD files in it"
            )
    parent = os.path.dirname(out)
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = os.path.join(parent, f".{os.path.basename(out)}.synth-{os.getpid()}")
        os.makedirs(tmp)
    except OSError as e:
        raise SynthError(f"cannot write next to --out {out}: {e.strerror or e}") from None
    return tmp


def _publish(tmp: str, out: str) -> None:
    """Move the finished files into place: a rename of the whole dir when ``out`` is new; else
    replace the generator's files in ``out`` (stale slices removed, other files kept)."""
    out = os.path.abspath(out)
    if os.path.isdir(out) and not os.listdir(out):
        os.rmdir(out)
    if not os.path.exists(out):
        os.rename(tmp, out)
        return
    new = set(os.listdir(tmp))
    for name in os.listdir(out):
        if _is_output(name) and name not in new:
            os.remove(os.path.join(out, name))
    for name in sorted(new):
        os.replace(os.path.join(tmp, name), os.path.join(out, name))
    os.rmdir(tmp)


@contextmanager
def _staged(out: str, overwrite: bool):
    """A temporary dir next to ``out`` for the block to fill and publish; removed if it fails."""
    tmp = _prepare(out, overwrite)
    try:
        yield tmp
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SynthError(f"writing {out} failed: {e}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_challenge(folder: str, seed: int, n_playlists: int, count: int) -> None:
    cs, truth = challenge_set(seed, n_playlists, count)
    _dump(cs, os.path.join(folder, CHALLENGE_FILE))
    _dump(truth, os.path.join(folder, CHALLENGE_HOLDOUTS_FILE))


def _dump(obj, path: str) -> None:
    with open(path, "w", encoding="ascii") as f:
        f.write(json.dumps(obj, indent=4, separators=(", ", ": ")) + "\n")


def generate(
    n_playlists: int,
    out: str,
    seed: int = 0,
    workers: int = 1,
    overwrite: bool = False,
    challenge: int = 0,
    progress=None,
) -> list[str]:
    """Write a synthetic MPD of ``n_playlists`` playlists to ``out``; returns the slice file names.

    ``progress`` (a file, e.g. ``sys.stderr``) receives a line every ~5% of the slices.
    """
    if not isinstance(n_playlists, int) or n_playlists <= 0:
        raise SynthError(f"--playlists must be a positive integer, got {n_playlists!r}")
    if workers < 1:
        raise SynthError(f"--workers must be >= 1, got {workers}")
    if challenge < 0:
        raise SynthError(f"--challenge-set must be >= 0, got {challenge}")
    if not 0 <= seed < 1 << 63:
        raise SynthError(f"--seed must be in 0..2^63-1, got {seed}")
    n_files = -(-n_playlists // PLAYLISTS_PER_SLICE)
    with _staged(out, overwrite) as tmp:
        tasks = [(tmp, seed, n_playlists, i) for i in range(n_files)]
        names = []
        t0 = time.perf_counter()
        done_playlists = 0
        every = max(1, n_files // 20)

        def report(name: str, count: int) -> None:
            nonlocal done_playlists
            names.append(name)
            done_playlists += count
            if progress is not None and (len(names) % every == 0 or len(names) == n_files):
                rate = done_playlists / max(time.perf_counter() - t0, 1e-9)
                print(
                    f"synth: {len(names)}/{n_files} slices, {done_playlists} playlists, {rate:,.0f} playlists/s",
                    file=progress,
                    flush=True,
                )

        if workers == 1 or n_files == 1:
            for task in tasks:
                name, count, _ = write_slice(*task)
                report(name, count)
        else:
            # forkserver, not fork: the caller may hold threads (a Spark driver, a trainer).
            # ProcessPoolExecutor, not Pool: a worker that dies raises instead of hanging.
            ctx = get_context("forkserver" if os.name == "posix" else "spawn")
            try:
                with ProcessPoolExecutor(min(workers, n_files), mp_context=ctx) as pool:
                    for name, count, _ in pool.map(_write_slice_task, tasks):
                        report(name, count)
            except BrokenProcessPool as e:
                raise SynthError(f"a worker process died ({e}); run with --workers 1 to see why") from None
        if challenge:
            _write_challenge(tmp, seed, n_playlists, challenge)
        _publish(tmp, out)
    return names


def write_graph(
    n_playlists: int,
    out: str,
    seed: int = 0,
    overwrite: bool = False,
    num_holdout: int | None = None,
    progress=None,
    challenge: int = 0,
) -> None:
    """Write the generator's first ``n_playlists`` playlists to ``out`` as a contract graph dir
    (with ``challenge`` > 0, the challenge set and its hold-outs beside the tables).

    The dir appears whole or not at all (written next to ``out``, then renamed); ``--overwrite``
    replaces an earlier graph dir (one with a manifest), never a folder of something else.
    """
    if not isinstance(n_playlists, int) or n_playlists <= 0:
        raise SynthError(f"--playlists must be a positive integer, got {n_playlists!r}")
    if challenge < 0:
        raise SynthError(f"--challenge-set must be >= 0, got {challenge}")
    if num_holdout is not None and not 0 <= 2 * num_holdout < n_playlists:
        raise SynthError(f"--holdout {num_holdout} per split leaves no training playlists of {n_playlists}")
    out = os.path.abspath(out)
    if overwrite and os.path.isdir(out) and os.listdir(out) and not os.path.exists(os.path.join(out, MANIFEST)):
        raise SynthError(f"--out {out} holds files but no {MANIFEST}: not a graph dir, not replaced")
    log = None if progress is None else (lambda msg: print(f"synth: {msg}", file=progress, flush=True))
    with _staged(out, overwrite) as tmp:
        synthetic_graph_dir(tmp, n_playlists, seed, num_holdout, log)
        if challenge:
            _write_challenge(tmp, seed, n_playlists, challenge)
        old = f"{tmp}.old"
        if os.path.exists(out):
            os.rename(out, old)
        os.rename(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
