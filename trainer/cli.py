"""What every command of the trainer shares, in one place: the flags each takes (declared once,
every number checked as argparse reads it), one set of user errors (one line on stderr, exit 2),
Ctrl-C and SIGTERM (one line, exit 130 / 143), logging and progress bars set up once, and notes
on stderr. A command is ``main(argv) -> int`` over a library function named by its verb."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Callable

from tqdm.contrib.logging import logging_redirect_tqdm

from etl.flags import count as count  # the flag types, shared with the ETL's commands
from etl.flags import number as number
from trainer import dist, process
from trainer.gnn.divergence import TrainingDiverged
from trainer.gnn.sampled import SamplerMissing
from trainer.io import run_dir, storage
from trainer.methods import METHODS

# A user's mistake, said in one line without a traceback. ValueError covers the config's, the
# contract's, a damaged checkpoint's and a mismatched run's errors, which derive from it.
USER_ERRORS = (
    ValueError,
    FileNotFoundError,
    run_dir.RunExistsError,
    storage.OutputError,
    storage.Locked,
    storage.MissingExtra,
    dist.DeviceError,
    TrainingDiverged,
    SamplerMissing,
)
EXIT_USER_ERROR, EXIT_INTERRUPTED, EXIT_TERMINATED = 2, 130, 143


class Terminated(BaseException):
    """SIGTERM (a scheduler's time limit, preemption, ``timeout``): unwinds like Ctrl-C, so the
    ``finally`` blocks that remove staging files run, and no ``except Exception`` swallows it."""


def _terminate(signum, frame):
    raise Terminated


@contextlib.contextmanager
def sigterm_after_the_step():
    """SIGTERM (preemption, a scheduler's time limit) while training: the step in progress
    finishes, a checkpoint is written, then the run stops (``--resume`` continues it). The
    yielded list holds the signal once it came."""
    came: list[int] = []
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield came
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: came.append(signum))
    try:
        yield came
    finally:
        signal.signal(signal.SIGTERM, previous)


def parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog=f"python -m {prog}",
        description=(doc or "").split("\n\n")[0].strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_graph(p: argparse.ArgumentParser, text: str = "graph dir written by etl.job (path or fsspec URL)") -> None:
    p.add_argument("--graph", required=True, help=text)


def add_run(p: argparse.ArgumentParser, text: str = "run dir written by trainer.train (path or fsspec URL)") -> None:
    p.add_argument("--run", required=True, help=text)


def add_method(p: argparse.ArgumentParser) -> None:
    """The one method recommend and submit rank by (``trainer.methods.default_method`` when not given)."""
    p.add_argument(
        "--method",
        choices=METHODS,
        help="default: rerank when the run has a ranker, else gnn when it has embeddings, else itemknn",
    )


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", choices=dist.DEVICES, help="auto: the GPU when there is one")


def note(text: str) -> None:
    """Something the user should know that is not an error: on stderr, beside the logs."""
    print(f"note: {text}", file=sys.stderr)


def run(body: Callable[[], object]) -> int:
    """Run a command's ``body`` with logging (INFO on rank 0, warnings elsewhere) and progress
    bars set up, and its end said in one line: 0 when it returns, 2 on a user error, 130 on
    Ctrl-C, 143 on SIGTERM."""
    process.configure_logging(dist.launched_rank() == 0)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        with logging_redirect_tqdm():
            body()
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted (Ctrl-C): stopped; what was published before stays whole", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        print("terminated (SIGTERM): stopped; what was published before stays whole", file=sys.stderr)
        return EXIT_TERMINATED
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0
