"""A damaged graph dir is refused by name: a missing or extra Parquet part (the manifest counts
every table's rows) and a truncated part, for both views of the reader."""

import glob
import os
import shutil

import pytest
from graphdir_fixture import toy_graph_dir

from etl import contract
from trainer.io.catalogue import load_catalogue
from trainer.io.graph import load_graph


@pytest.fixture()
def graph(tmp_path):
    return toy_graph_dir(str(tmp_path / "graph"), 120, seed=3)


@pytest.mark.parametrize("load", [load_graph, load_catalogue])
def test_a_missing_part_is_named_with_the_manifest_count(graph, load):
    parts = sorted(glob.glob(os.path.join(graph, "edges", "playlist_track", "*.parquet")))
    assert len(parts) >= 2
    os.remove(parts[0])
    with pytest.raises(
        contract.ContractError,
        match=r"edges/playlist_track holds [\d,]+ rows in 1 Parquet file\(s\), "
        r"the manifest counts [\d,]+: a part is missing",
    ):
        load(graph)


def test_an_extra_part_is_named(graph):
    part = sorted(glob.glob(os.path.join(graph, "nodes", "track", "*.parquet")))[0]
    shutil.copy(part, part.replace(".parquet", "-copy.parquet"))
    with pytest.raises(contract.ContractError, match="nodes/track holds .* the manifest counts"):
        load_graph(graph)


@pytest.mark.parametrize("load", [load_graph, load_catalogue])
def test_a_truncated_part_is_named(graph, load):
    part = sorted(glob.glob(os.path.join(graph, "edges", "playlist_track", "*.parquet")))[0]
    with open(part, "rb") as f:
        data = f.read()
    with open(part, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(
        contract.ContractError, match="edges/playlist_track cannot be read .* a Parquet part is damaged"
    ):
        load(graph)
