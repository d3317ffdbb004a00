"""The layout is the architecture: imports form a DAG, layers only import downwards, commands
import the library and never each other, bench/ reaches into no test module, no source file
outgrows one screenful of responsibility, and the README's Layout tree is the tree git holds."""

import ast
import os
import re
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMANDS = {
    "trainer.train",
    "trainer.embed",
    "trainer.evaluate",
    "trainer.recommend",
    "trainer.submit",
    "trainer.rerank",
}
ETL_COMMANDS = {"etl.job", "etl.synth.command", "etl.synth.__main__"}
# etl/contract <- trainer/{config,dist} <- io <- ranking <- gnn <- commands
LAYERS = [
    ("etl.contract",),
    ("trainer.config", "trainer.dist", "trainer.process", "trainer.hugepages", "trainer.regime"),
    ("trainer.io",),
    ("trainer.evaluation",),
    ("trainer.ranker",),
    ("trainer.gnn",),
    ("trainer.methods",),
    ("trainer.cli",),
    tuple(sorted(COMMANDS)),
]
MAX_LINES = 350  # as ruff format writes them


def _tracked(*patterns: str) -> list[str]:
    out = subprocess.run(["git", "ls-files", *patterns], cwd=REPO, capture_output=True, text=True, check=True)
    return [p for p in out.stdout.splitlines() if os.path.exists(os.path.join(REPO, p))]


def _module(path: str) -> str:
    mod = path[:-3].replace("/", ".")
    return mod[: -len(".__init__")] if mod.endswith(".__init__") else mod


def _imports(path: str) -> set[str]:
    """Project modules ``path`` imports (``from trainer.io import storage`` -> trainer.io.storage)."""
    with open(os.path.join(REPO, path)) as f:
        tree = ast.parse(f.read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    modules = {_module(p) for p in _tracked("etl/*.py", "trainer/*.py")}
    return {m for m in found if m in modules and m != _module(path)}


def _layer(module: str) -> int | None:
    for i, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    return None


def _trainer_sources() -> list[str]:
    return [p for p in _tracked("trainer/*.py") if not p.endswith("__init__.py")]


def test_trainer_imports_only_downwards():
    upward = []
    for path in _trainer_sources():
        here = _layer(_module(path))
        assert here is not None, f"{path} is in no layer of {LAYERS}: place it, or add its layer"
        for imported in _imports(path):
            there = _layer(imported)
            # etl.flags: the flag types every command shares, no ETL logic
            if imported.startswith("etl.") and imported not in ("etl.contract", "etl.flags"):
                upward.append(
                    f"{path} imports {imported}: the trainer reads only the contract (and flag types) of etl/"
                )
            elif there is not None and there > here:
                upward.append(f"{path} (layer {here}) imports {imported} (layer {there})")
    assert upward == []


def test_commands_never_import_each_other_and_etl_never_imports_the_trainer():
    wrong = [
        f"{p} imports {m}" for p in _trainer_sources() if _module(p) in COMMANDS for m in _imports(p) if m in COMMANDS
    ]
    wrong += [f"{p} imports {m}" for p in _tracked("etl/*.py") for m in _imports(p) if m.startswith("trainer")]
    assert wrong == []


def test_the_import_graph_has_no_cycle():
    graph = {
        _module(p): {m for m in _imports(p) if not m.endswith("__init__")} for p in _tracked("etl/*.py", "trainer/*.py")
    }
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]):
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                pytest.fail(f"import cycle: {' -> '.join(trail + [node, nxt])}")
            if nxt not in state:
                visit(nxt, trail + [node])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [])


def test_bench_reaches_into_no_test_module():
    tests = {_module(os.path.basename(p)) for p in _tracked("tests/*.py")}
    wrong = []
    for path in _tracked("bench/*.py", "bench/*.sh"):
        with open(os.path.join(REPO, path)) as f:
            text = f.read()
        if re.search(r"(sys\.path|PYTHONPATH)[^\n]*tests", text):
            wrong.append(f"{path} puts tests/ on the path")
        if path.endswith(".py"):
            wrong += [f"{path} imports {m}" for m in _imports(path) | _plain_imports(path) if m in tests]
    assert wrong == []


def test_bench_is_a_plain_client_of_the_installed_package():
    # bench/ scripts import etl and trainer as installed (editable) packages: no sys.path edits,
    # no command module (a command's library function lives below it), no private name.
    modules = {_module(p) for p in _tracked("etl/*.py", "trainer/*.py")}
    wrong = []
    for path in _tracked("bench/*.py"):
        with open(os.path.join(REPO, path)) as f:
            text = f.read()
        tree = ast.parse(text, path)
        if re.search(r"sys\.path\.(insert|append)|sys\.path\s*=|PYTHONPATH", text):
            wrong.append(f"{path} edits sys.path")
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for a in node.names:
                    full = f"{node.module}.{a.name}"
                    if node.module in modules and a.name.startswith("_"):
                        wrong.append(f"{path} imports the private {full}")
                    if full in modules:
                        aliases[a.asname or a.name] = full
            elif isinstance(node, ast.Import):
                aliases |= {(a.asname or a.name): a.name for a in node.names if a.name in modules}
        imported = _imports(path) | {m for m in _plain_imports(path) if m in modules}
        wrong += [f"{path} imports the command {m}" for m in imported if m in COMMANDS | ETL_COMMANDS]
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                wrong.append(f"{path} uses the private {aliases[node.value.id]}.{node.attr}")
    assert wrong == []


def _plain_imports(path: str) -> set[str]:
    with open(os.path.join(REPO, path)) as f:
        tree = ast.parse(f.read(), path)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_source_file_over_350_lines():
    long = {}
    for path in _tracked("etl/*.py", "trainer/*.py"):
        with open(os.path.join(REPO, path)) as f:
            n = sum(1 for _ in f)
        if n > MAX_LINES:
            long[path] = n
    assert long == {}


def _readme_layout() -> tuple[set[str], set[str]]:
    """(files, summarised folders) of the README's Layout tree: two spaces per level, a folder
    ends with ``/``, a folder listed without children stands for all its files."""
    with open(os.path.join(REPO, "README.md")) as f:
        text = f.read()
    block = re.search(r"^## Layout\n+```\n(.*?)^```", text, re.S | re.M).group(1)
    files, folders, stack = set(), set(), []
    lines = block.splitlines()
    for i, line in enumerate(lines):
        depth = (len(line) - len(line.lstrip(" "))) // 2
        stack = stack[:depth]
        if depth == 0 and not line.split()[0].endswith("/"):
            files |= set(line.split())  # the top level's files, on one line
            continue
        name = line.split()[0]
        path = "".join(stack) + name
        if name.endswith("/"):
            nxt = lines[i + 1] if i + 1 < len(lines) else ""
            if (len(nxt) - len(nxt.lstrip(" "))) // 2 <= depth:
                folders.add(path)
            stack.append(name)
        else:
            files.add(path)
    return files, folders


def test_readme_layout_lists_every_tracked_file():
    files, folders = _readme_layout()
    tracked = {
        p
        for p in _tracked()
        if not p.startswith(".") and not p.endswith("__init__.py") and not any(p.startswith(f) for f in folders)
    }
    assert sorted(tracked - files) == [], "tracked but missing from the README's Layout"
    assert sorted(files - tracked) == [], "in the README's Layout but not tracked"
    assert {"tests/", "bench/log/"} <= folders
