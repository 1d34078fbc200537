"""The house along the data's path: imports run one way (the import-linter layers contract in pyproject.toml),
and no module imports another module's private name."""

import ast
import pathlib
import shutil
import subprocess
import sys

import pytest

import xstructure

PKG = pathlib.Path(xstructure.__file__).parent
ROOT = pathlib.Path(__file__).resolve().parents[1]


def _modules():
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def _resolve(module: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def test_no_module_imports_another_modules_private_name():
    """`from .x import _name` across modules (a private module such as _backend is a name of the package's own
    boundary, and may be imported; a private function or constant of another module may not)."""
    bad = []
    modules = dict(_modules())
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            target = _resolve(name, path.name == "__init__.py", node)
            if not target.startswith("xstructure"):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if alias.name.startswith("_") and sub not in modules and alias.name not in ("__version__", "_core"):
                    bad.append(f"{name}: from {target} import {alias.name} (line {node.lineno})")
            if target != name and target.split(".")[-1].startswith("_") and target not in (
                    "xstructure._backend", "xstructure._ops", "xstructure._version", "xstructure._validate"):
                bad.append(f"{name}: imports the private module {target} (line {node.lineno})")
    assert not bad, "\n".join(bad)


def test_layers_contract():
    """`lint-imports` with the contract in pyproject.toml: no import circle, no import up the layers."""
    exe = shutil.which("lint-imports")
    if exe is None:
        pytest.skip("import-linter is not installed (pip install import-linter)")
    env_path = str(PKG.parent)
    proc = subprocess.run([exe, "--config", str(ROOT / "pyproject.toml")], capture_output=True, text=True,
                          cwd=ROOT, env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"}, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]


def test_package_root_only_reexports():
    """xstructure/__init__.py defines no function but its lazy attribute hooks."""
    tree = ast.parse((PKG / "__init__.py").read_text())
    defs = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    assert set(defs) <= {"__getattr__", "__dir__"}, defs
    assert "annotations" not in dir(xstructure) and "import_module" not in dir(xstructure)
