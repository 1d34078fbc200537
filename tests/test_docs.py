"""The Python examples in README.md run as written."""

import pathlib
import re

import numpy as np
import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples():
    assert python_blocks()


@pytest.mark.parametrize("k", range(len(python_blocks())))
def test_readme_example_runs(k, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)  # the example writes a pool store in the working directory
    namespace = {}
    exec(compile(python_blocks()[k], f"README.md[python block {k}]", "exec"), namespace)
    assert namespace["I"].shape == (500,) and namespace["sM"].shape == (10_000, 500)
    assert namespace["x"].grad is not None
    xs, nmm, pos = namespace["xstructure"], namespace["nmm"], namespace["pos"]
    assert 0 < namespace["r"] <= xs.rmsd(nmm.positions, pos[0]) + 1e-12   # relabelling can only lower it
    assert namespace["patterns"].shape == (10_000, 500) and (tmp_path / "nmm.zarr").is_dir()
    assert np.array_equal(namespace["q_pool"], namespace["q"])
