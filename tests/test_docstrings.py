"""Every public function and class (the names in each public module's __all__) has a numpydoc docstring; functions
that take arguments describe them in a Parameters section."""

import importlib
import inspect
import pkgutil

import pytest

import xstructure

torch = pytest.importorskip("torch")   # xstructure.ops and xstructure.learn need it


def _public():
    for m in pkgutil.walk_packages(xstructure.__path__, "xstructure."):
        if any(part.startswith("_") for part in m.name.split(".")):
            continue   # private modules (the boundary to the compiled core, shared checks, __main__)
        mod = importlib.import_module(m.name)
        for name in getattr(mod, "__all__", []):
            obj = getattr(mod, name)
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == mod.__name__:
                yield f"{mod.__name__}.{name}", obj


def _takes_arguments(obj) -> bool:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return False
    return any(p.name not in ("self", "cls") for p in sig.parameters.values())


def test_every_public_function_and_class_has_a_numpydoc_docstring():
    missing, no_params = [], []
    for qual, obj in _public():
        doc = inspect.getdoc(obj)
        if not doc:
            missing.append(qual)
        elif inspect.isfunction(obj) and _takes_arguments(obj) and "Parameters\n----------" not in doc:
            no_params.append(qual)
    assert not missing, f"no docstring: {missing}"
    assert not no_params, f"no numpydoc Parameters section: {no_params}"
