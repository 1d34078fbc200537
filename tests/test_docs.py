"""The Python examples in README.md run as written."""

import pathlib
import re
import textwrap

import numpy as np
import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def python_blocks():
    """The ```python blocks, dedented (a block inside a list item is indented)."""
    return [textwrap.dedent(b) for b in re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)]


def test_readme_has_examples():
    assert python_blocks()


@pytest.mark.parametrize("k", range(len(python_blocks())))
def test_readme_example_runs(k, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)  # the example writes a pool store in the working directory
    namespace = {}
    exec(compile(python_blocks()[k], f"README.md[python block {k}]", "exec"), namespace)  # noqa: S102 (the README)
    if "truth" in namespace:        # time-resolved experiments: the answer the synthetic run was made from
        truth, red, onset, best = (namespace[n] for n in ("truth", "red", "onset", "best"))
        assert red.diff.shape == (20, 200) and red.sigma.shape == (20, 200)
        assert abs(onset.t0 - truth.t0) < 10 and abs(onset.width - truth.width) < 0.2 * truth.width
        assert best.label == "C=CC=CC=C" and abs(best.fraction - truth.fraction) < 0.05 * truth.fraction
        return
    assert namespace["I"].shape == (500,) and namespace["sM"].shape == (10_000, 500)
    assert namespace["x"].grad is not None
    xs, nmm, pos = namespace["xstructure"], namespace["nmm"], namespace["pos"]
    assert 0 < namespace["r"] <= xs.rmsd(nmm.positions, pos[0]) + 1e-12   # relabelling can only lower it
    assert namespace["patterns"].shape == (10_000, 500) and (tmp_path / "nmm.zarr").is_dir()
    assert np.array_equal(namespace["q_pool"], namespace["q"])
