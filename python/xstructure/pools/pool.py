"""Pools of sampled geometries and their scattering patterns, in a resumable zarr v3 store: :class:`Pool`.

A pool is a directory (a zarr v3 directory store) that holds B geometries of one molecule, sampled by
:func:`xstructure.pools.sampling.sample` (Wigner, MD or MC), their energies, and any number of pattern sets
(:func:`xstructure.simulate` on a q grid).  Everything is computed chunk by chunk, and a chunk counts only
once its ``done`` flag is set, after its data are written: a run that is stopped (Ctrl-C, SIGKILL, a lost
node) is finished by running the same call again.  Chunks can be computed by the workers of a
dask.distributed cluster (``scheduler=``) that write their own region of the store.

::

    pool = Pool.create("nmm.zarr", "NMM", "wigner", n=100_000, temperature=300, chunk=4096)
    pool.simulate(np.linspace(0.5, 10, 500), probe="xray", signal="molecular")
    q, I = pool.patterns("xray_molecular")          # I: lazy zarr array (B, Q)

The layout is described in docs/pool.md.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import uuid
from typing import Any

import numpy as np

from .._version import __version__
from ..align import rmsd
from ..scattering import PROBES, SIGNALS, as_q, signal_label, simulate
from ..structures import bond_graph
from ..structures import molecule as _molecule

__all__ = ["Pool", "FORMAT", "VERSION", "dask_client"]

FORMAT = "xstructure-pool"
VERSION = 1
_PATTERN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_ROOT_KEYS = ("molecule", "numbers", "reference", "method", "temperature", "seed", "params", "calc", "n_total",
              "chunk", "created_by")


def compressors():
    from zarr.codecs import (  # loaded on use: keeps `import xstructure` fast
        BloscCodec,
        BloscShuffle,
    )

    return BloscCodec(cname="zstd", clevel=3, shuffle=BloscShuffle.shuffle)


def _positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    if value <= 0:
        raise ValueError(f"{what} must be a positive integer, got {value}")
    return int(value)


def _jsonable(params: dict, what: str) -> dict:
    """params as plain JSON (lists for tuples/arrays): what is stored, compared on resume and passed on."""
    def default(x):
        if isinstance(x, np.generic):
            return x.item()
        if isinstance(x, np.ndarray):
            return x.tolist()
        raise TypeError(type(x).__name__)

    try:
        return json.loads(json.dumps(params, default=default, sort_keys=True, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be JSON-serialisable (numbers, strings, lists, dicts): {exc}") from None


def open_group(path: str, mode: str = "r"):
    """The store's root group; ValueError when it is not a readable zarr v3 store."""
    import zarr  # loaded on use: keeps `import xstructure` fast

    if not os.path.isdir(path):
        raise ValueError(f"{path}: no pool there (not a directory)")
    try:
        return zarr.open_group(store=path, mode=mode, zarr_format=3)
    except Exception as exc:  # missing or unparseable zarr.json, an array at the root, ...
        raise ValueError(f"{path} is not a readable zarr v3 store ({type(exc).__name__}: {exc})") from None


def _done_flags(array, path: str, what: str) -> np.ndarray:
    try:
        return np.asarray(array[:], dtype=bool)
    except Exception as exc:
        raise ValueError(f"{path}: the {what} done flags cannot be read ({type(exc).__name__}: {exc}); "
                         "the store is corrupted") from None


def _check_array(group, key: str, shape: tuple, dtype, chunks: tuple | None, path: str):
    import zarr  # loaded on use: keeps `import xstructure` fast

    try:
        arr = group[key]
    except Exception:
        arr = None
    if not isinstance(arr, zarr.Array):
        raise ValueError(f"{path}: required array '{group.path + '/' if group.path else ''}{key}' is missing; "
                         "the store is corrupted")
    if tuple(arr.shape) != tuple(shape) or np.dtype(arr.dtype) != np.dtype(dtype) or (
            chunks is not None and tuple(arr.chunks) != tuple(chunks)):
        raise ValueError(f"{path}: array '{key}' is {arr.dtype} {tuple(arr.shape)} in chunks {tuple(arr.chunks)}; "
                         f"expected {np.dtype(dtype)} {tuple(shape)}"
                         + (f" in chunks {tuple(chunks)}" if chunks is not None else "") + "; the store is corrupted")
    return arr


def _check_store(path: str, group) -> dict:
    """Validate format, version and every required array of an opened store; return its root attrs."""
    attrs = dict(group.attrs)
    if attrs.get("format") != FORMAT:
        raise ValueError(f"{path} is not an xstructure pool (format attribute {attrs.get('format')!r}, "
                         f"expected {FORMAT!r})")
    if attrs.get("version") != VERSION:
        raise ValueError(f"{path} is an xstructure pool of version {attrs.get('version')!r}; this xstructure "
                         f"reads version {VERSION}")
    missing = [k for k in _ROOT_KEYS if k not in attrs]
    if missing:
        raise ValueError(f"{path}: root attributes {missing} are missing; the store is corrupted")
    try:
        N, B, C = len(attrs["numbers"]), int(attrs["n_total"]), int(attrs["chunk"])
        ref = np.asarray(attrs["reference"], dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: root attributes numbers/n_total/chunk/reference are malformed; "
                         "the store is corrupted") from None
    if N < 1 or B < 1 or C < 1 or ref.shape != (N, 3):
        raise ValueError(f"{path}: root attributes numbers/n_total/chunk/reference are inconsistent; "
                         "the store is corrupted")
    n_chunks = math.ceil(B / C)
    numbers = _check_array(group, "numbers", (N,), np.int64, None, path)
    if not np.array_equal(numbers[:], attrs["numbers"]):
        raise ValueError(f"{path}: array 'numbers' differs from the numbers attribute; the store is corrupted")
    _check_array(group, "positions", (B, N, 3), np.float64, (C, N, 3), path)
    _check_array(group, "energies", (B,), np.float64, (C,), path)
    _done_flags(_check_array(group, "done", (n_chunks,), bool, None, path), path, "sampling")
    import zarr  # loaded on use: keeps `import xstructure` fast

    patterns = group.get("patterns")
    if not isinstance(patterns, zarr.Group):
        raise ValueError(f"{path}: group 'patterns' is missing; the store is corrupted")
    for name, sub in patterns.groups():
        a = dict(sub.attrs)
        if not {"probe", "signal", "energy_kev"} <= a.keys():
            raise ValueError(f"{path}: pattern set {name!r} lacks its probe/signal/energy_kev attributes; "
                             "the store is corrupted")
        q = _check_array(sub, "q", (sub["q"].shape[0],) if "q" in sub else (0,), np.float64, None, path)
        Q = q.shape[0]
        _check_array(sub, "I", (B, Q), np.float64, (C, Q), path)
        _done_flags(_check_array(sub, "done", (n_chunks,), bool, None, path), path, f"pattern set {name!r}")
    return attrs


def new_store_dir(beside: str):
    """A fresh zarr group in a temporary sibling of the directory ``beside`` (outside any store), returned with
    its directory: fill it, then rename it into place with :func:`move_in`."""
    import zarr  # loaded on use: keeps `import xstructure` fast

    tmp = f"{beside}.creating-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    return zarr.create_group(store=tmp, zarr_format=3), tmp


def move_in(tmp: str, path: str):
    """Rename a finished temporary directory to ``path`` (atomic; replaces an empty directory only)."""
    try:
        os.rename(tmp, path)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ValueError(f"could not create {path}: {exc}") from None


# ---- chunk tasks: module-level (picklable), each writes its own zarr-chunk-aligned region ---------------------

def _bounds(attrs: dict, i: int) -> tuple[int, int]:
    C, B = int(attrs["chunk"]), int(attrs["n_total"])
    return i * C, min(B, (i + 1) * C)


def _sample_chunk(path: str, i: int, calc=None) -> int:
    """Sample chunk i of the pool at ``path`` and write its positions and energies (not its done flag)."""
    import ase  # loaded on use: keeps `import xstructure` fast

    from . import (
        sampling,  # looked up on use: it needs RDKit, and tests swap in a stand-in sampler
    )

    group = open_group(path, "r+")
    a = dict(group.attrs)
    start, stop = _bounds(a, i)
    n, N = stop - start, len(a["numbers"])
    atoms = ase.Atoms(numbers=a["numbers"], positions=a["reference"])
    out = sampling.sample(atoms, a["method"], n, a["temperature"], seed=a["seed"], calc=calc, start=start,
                          chunk=int(a["chunk"]), **a["params"])
    pos = np.asarray(out["positions"], dtype=np.float64)
    energies = np.asarray(out["energies"], dtype=np.float64)
    if pos.shape != (n, N, 3) or energies.shape != (n,):
        raise ValueError(f"sampling.sample returned positions {pos.shape} and energies {energies.shape}; "
                         f"expected ({n}, {N}, 3) and ({n},)")
    if not np.all(np.isfinite(pos)):
        raise ValueError(f"sampling.sample returned NaN or inf positions in chunk {i}")
    group["positions"][start:stop] = pos
    group["energies"][start:stop] = energies
    return i


def _simulate_chunk(path: str, i: int, name: str) -> int:
    """Patterns of chunk i for pattern set ``name`` of the pool at ``path``, written to its I (not its flag)."""
    group = open_group(path, "r+")
    a = dict(group.attrs)
    start, stop = _bounds(a, i)
    sub = group["patterns"][name]
    pa = dict(sub.attrs)
    I = simulate((group["numbers"][:], group["positions"][start:stop]), sub["q"][:], probe=pa["probe"],
                 signal=pa["signal"], energy_kev=pa["energy_kev"])
    sub["I"][start:stop] = I
    return i


def dask_client(scheduler):
    """A dask.distributed client for an address or a Client.

    Parameters
    ----------
    scheduler : str or distributed.Client
        A scheduler address such as ``'tcp://host:8786'``, or a Client.

    Returns
    -------
    client : distributed.Client
    owned : bool
        Whether the client was made here (then the caller closes it).

    Raises
    ------
    ValueError
        dask.distributed is not installed, the scheduler cannot be reached, or ``scheduler`` is neither.
    """
    try:
        from distributed import Client  # optional dependency (dask.distributed)
    except ImportError:
        raise ValueError("scheduler= needs dask.distributed: pip install 'xstructure[scale]'") from None
    if isinstance(scheduler, Client):
        return scheduler, False
    if isinstance(scheduler, str):
        try:
            return Client(scheduler, set_as_default=False, timeout="20s"), True
        except (OSError, TimeoutError) as exc:
            raise ValueError(f"could not connect to the dask scheduler at {scheduler}: {exc}") from None
    raise ValueError(f"scheduler must be None, an address such as 'tcp://host:8786', or a dask.distributed "
                     f"Client; got {type(scheduler).__name__}")


def _run_chunks(path: str, done, pending: list[int], sizes: list[int], task, args: tuple, *, progress: bool,
                scheduler, desc: str):
    """Run task(path, i, *args) for every pending chunk i, in process or on a dask cluster; the driver sets
    done[i] after chunk i's task has returned (its data are then in the store)."""
    bar = None
    if progress and pending:
        from tqdm.auto import tqdm  # loaded on use: keeps `import xstructure` fast

        bar = tqdm(total=sum(sizes), unit="geometry", desc=desc)
    try:
        if scheduler is None:
            for i, size in zip(pending, sizes):
                task(path, i, *args)
                done[i] = True
                if bar is not None:
                    bar.update(size)
            return
        from distributed import as_completed  # optional dependency (dask.distributed)

        client, owned = dask_client(scheduler)
        token = uuid.uuid4().hex[:8]
        try:
            size_of = dict(zip(pending, sizes))
            futures = [client.submit(task, path, i, *args, key=f"{desc}-{i}-{token}", pure=False)
                       for i in pending]
            try:
                for fut in as_completed(futures, loop=client.loop):
                    i = fut.result()
                    done[i] = True
                    if bar is not None:
                        bar.update(size_of[i])
            except BaseException:
                client.cancel(futures)
                raise
        finally:
            if owned:
                client.close()
    finally:
        if bar is not None:
            bar.close()


class Pool:
    """A pool of sampled geometries of one molecule and its pattern sets, in a zarr v3 directory store.

    Made by :meth:`create`, opened by :meth:`open` (not constructed directly). Arrays are lazy zarr arrays:
    index them to read. The store's layout is described in the user guide's pool page.

    Attributes
    ----------
    path : str
        Absolute path of the store.
    numbers : numpy.ndarray
        (N,) int64 atomic numbers.
    reference : numpy.ndarray
        (N, 3) reference (equilibrium) positions in Å, the geometry the sampling started from.
    positions : zarr.Array
        Lazy (B, N, 3) float64 array of the sampled positions in Å.
    energies : zarr.Array
        Lazy (B,) float64 array of their energies in eV (as the sampler reports them).
    attrs : dict
        The root attributes (format, version, molecule, method, temperature, seed, params, ...).

    Examples
    --------
    >>> import numpy as np, xstructure
    >>> pool = xstructure.Pool.create("nmm.zarr", "NMM", "wigner", n=1000, temperature=300)
    >>> name = pool.simulate(np.linspace(0.5, 10, 500), probe="xray", signal="molecular")
    >>> q, I = pool.patterns(name)          # (500,) Å⁻¹ and a lazy (1000, 500) array
    """

    def __init__(self, path: str, group, attrs: dict):
        self.path = path
        self._group = group
        self.attrs = attrs

    # ---- making and opening ----------------------------------------------------------------------------------

    @classmethod
    def open(cls, path) -> "Pool":
        """Open an existing pool read-only.

        Parameters
        ----------
        path : str or os.PathLike
            The store's directory.

        Returns
        -------
        Pool
            The pool.

        Raises
        ------
        ValueError
            ``path`` is not an intact xstructure pool (the message says what is wrong).
        """
        path = os.path.abspath(os.fspath(path))
        group = open_group(path, "r")
        return cls(path, group, _check_store(path, group))

    @classmethod
    def create(cls, path, molecule, method: str = "wigner", *, n: int, temperature: float = 300.0, seed: int = 0,
               chunk: int = 1024, progress: bool = True, scheduler=None, calc=None, **kw) -> "Pool":
        """Sample ``n`` geometries of ``molecule`` into a new store at ``path``, or finish an interrupted one.

        When ``path`` already holds a pool made with identical arguments, only the chunks not yet marked done
        are (re)computed, so rerunning a stopped call finishes it.  Chunk i holds geometries
        [i·chunk, (i+1)·chunk) and is ``sampling.sample(atoms, method, n_i, temperature, seed=seed,
        start=i·chunk, chunk=chunk, calc=calc, **kw)`` (one sampler block): the pool equals one
        ``sample(atoms, method, n, temperature, seed=seed, chunk=chunk, ...)`` call, whichever chunks ran where
        and in what order.

        Parameters
        ----------
        path : str or os.PathLike
            directory of the store (created; an empty directory is fine).
        molecule : str or ase.Atoms
            a name (NMM, CHD, DT, an ase.build name), a SMILES string, a structure file (see
            :func:`xstructure.molecule`) or an ase.Atoms: the reference geometry.
        method : str, optional
            sampling method of :func:`xstructure.pools.sampling.sample`: 'wigner', 'md' or 'mc'.
        n : int
            number of geometries B, > 0.
        temperature : float, optional
            in K.
        seed : int, optional
            random seed (non-negative integer).
        chunk : int, optional
            geometries per chunk, the unit of work, of resuming and of the zarr chunks (chunk, N, 3).
        progress : bool, optional
            progress bar over geometries.
        scheduler : str, distributed.Client or None, optional
            None (compute in this process), or a dask.distributed scheduler address
            ('tcp://host:8786') or Client: the chunks are tasks whose workers write their region of the
            store; ``path`` must then be on a file system the workers share.
        calc : ase.calculators.calculator.Calculator or None, optional
            ASE calculator handed to the sampler (its class name is recorded and compared on resume;
            with ``scheduler`` it must be picklable).
        **kw
            further JSON-serialisable options of the sampling method, stored as ``params``.

        Returns
        -------
        Pool
            The opened :class:`Pool`.

        Raises
        ------
        ValueError
            n or chunk <= 0, unknown molecule or method, non-JSON options; or ``path`` holds
            something else than a pool, a pool of another format version, a corrupted pool, or a pool made
            with different arguments (then nothing in it is changed).
        """
        import zarr  # loaded on use: keeps `import xstructure` fast

        n = _positive_int(n, "n")
        chunk = _positive_int(chunk, "chunk")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        temperature = float(temperature)
        if not math.isfinite(temperature) or temperature < 0:
            raise ValueError(f"temperature must be finite and >= 0 K, got {temperature}")
        if not isinstance(method, str) or not method:
            raise ValueError(f"method must be a sampling method name such as 'wigner', got {method!r}")
        try:
            from . import (
                sampling,  # looked up on use: it needs RDKit, and tests swap in a stand-in sampler
            )
        except ImportError:
            sampling = None
        methods = tuple(getattr(sampling, "METHODS", ("wigner", "md", "mc")))
        if method not in methods:
            raise ValueError(f"unknown sampling method {method!r}: use one of {methods}")
        if hasattr(sampling, "check_options"):  # options and force field, before a store is made
            sampling.check_options(method, kw, calc)
        params = _jsonable(kw, "sampling options")
        if isinstance(molecule, (str, os.PathLike)):
            spec = os.fspath(molecule)
            atoms = _molecule(spec)  # ValueError for an unknown name or a bad SMILES
            name = os.path.basename(spec) if os.path.exists(spec) else spec
        elif hasattr(molecule, "get_positions") and hasattr(molecule, "numbers"):
            atoms, spec, name = molecule, None, molecule.get_chemical_formula()
        else:
            raise ValueError(f"molecule must be a name, SMILES, file or ase.Atoms, got {type(molecule).__name__}")
        numbers = [int(z) for z in atoms.numbers]
        if not numbers:
            raise ValueError("molecule has no atoms")
        reference = np.asarray(atoms.get_positions(), dtype=np.float64).tolist()
        wanted = {"numbers": numbers, "reference": reference, "method": method, "temperature": temperature,
                  "seed": int(seed), "params": params,
                  "calc": None if calc is None else f"{type(calc).__module__}.{type(calc).__qualname__}",
                  "n_total": n, "chunk": chunk}

        path = os.path.abspath(os.fspath(path))
        created = False
        if os.path.exists(path) and not (os.path.isdir(path) and not os.listdir(path)):
            pool = cls.open(path)  # ValueError: not a pool, other version, corrupted
            diff = [f"{k}: stored {_short(pool.attrs[k])}, asked {_short(v)}" for k, v in wanted.items()
                    if pool.attrs[k] != v]
            if diff:
                raise ValueError(f"{path} holds a pool made with other arguments ({'; '.join(diff)}); "
                                 "use another path, or the same arguments to resume it")
        else:
            group, tmp = new_store_dir(path)
            try:
                N, n_chunks = len(numbers), math.ceil(n / chunk)
                group.create_array("numbers", data=np.asarray(numbers, dtype=np.int64))
                group.create_array("positions", shape=(n, N, 3), chunks=(chunk, N, 3), dtype="float64",
                                   fill_value=np.nan, compressors=compressors(),
                                   dimension_names=("geometry", "atom", "xyz"))
                group.create_array("energies", shape=(n,), chunks=(chunk,), dtype="float64", fill_value=np.nan,
                                   compressors=compressors(), dimension_names=("geometry",))
                group.create_array("done", shape=(n_chunks,), chunks=(n_chunks,), dtype="bool", fill_value=False)
                group.create_group("patterns")
                group.attrs.update({"format": FORMAT, "version": VERSION,
                                    "molecule": {"name": name, "spec": spec, "formula": atoms.get_chemical_formula()},
                                    **wanted, "created_by": f"xstructure {__version__}"})
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            move_in(tmp, path)
            created = True

        group = zarr.open_group(store=path, mode="r+", zarr_format=3)
        done = group["done"]
        flags = _done_flags(done, path, "sampling")
        pending = [int(i) for i in np.flatnonzero(~flags)]
        sizes = [min(chunk, n - i * chunk) for i in pending]
        try:
            _run_chunks(path, done, pending, sizes, _sample_chunk, (calc,), progress=progress,
                        scheduler=scheduler, desc=f"pool-sample-{method}")
        except Exception:
            # A store this call made, with no chunk finished, is removed: the refused command leaves nothing
            # behind (an interruption keeps it, to resume).
            if created and not np.asarray(done[:]).any():
                shutil.rmtree(path, ignore_errors=True)
            raise
        return cls.open(path)

    # ---- reading ---------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self.attrs["n_total"])

    def __repr__(self) -> str:
        return (f"Pool({self.path!r}: {len(self)} x {self.attrs['molecule']['name']} "
                f"({self.attrs['method']}, {self.attrs['temperature']:g} K), "
                f"pattern sets {sorted(self.pattern_sets())})")

    @property
    def numbers(self) -> np.ndarray:
        """(N,) int64 atomic numbers."""
        return np.asarray(self.attrs["numbers"], dtype=np.int64)

    @property
    def reference(self) -> np.ndarray:
        """(N, 3) reference positions in Å."""
        return np.asarray(self.attrs["reference"], dtype=np.float64)

    @property
    def positions(self):
        """Lazy (B, N, 3) float64 zarr array of the sampled positions, Å."""
        return self._group["positions"]

    @property
    def energies(self):
        """Lazy (B,) float64 zarr array of the energies, eV."""
        return self._group["energies"]

    @property
    def complete(self) -> bool:
        """Whether every sampling chunk is done."""
        return bool(_done_flags(self._group["done"], self.path, "sampling").all())

    def pattern_sets(self) -> dict[str, dict[str, Any]]:
        """name -> {probe, signal, energy_kev, q (Q,) in Å⁻¹, complete} of every stored pattern set."""
        out = {}
        for name, sub in sorted(self._group["patterns"].groups()):
            a = dict(sub.attrs)
            out[name] = {"probe": a["probe"], "signal": a["signal"], "energy_kev": a["energy_kev"],
                         "q": sub["q"][:],
                         "complete": bool(_done_flags(sub["done"], self.path, f"pattern set {name!r}").all())}
        return out

    def patterns(self, name: str):
        """A stored pattern set.

        Parameters
        ----------
        name : str
            The set's name (see :meth:`pattern_sets`).

        Returns
        -------
        q : numpy.ndarray
            (Q,) momentum transfer in Å⁻¹.
        I : zarr.Array
            Lazy (B, Q) float64 patterns, in the set's unit (electrons² for X-rays, Å² for electrons, Å⁻¹ for sM).
        """
        sub = self._pattern_group(name)
        return sub["q"][:], sub["I"]

    def _pattern_group(self, name):
        names = sorted(n for n, _ in self._group["patterns"].groups())
        if name is None:
            if len(names) != 1:
                raise ValueError(f"name the pattern set: this pool has {names or 'none'}")
            name = names[0]
        if name not in names:
            raise ValueError(f"no pattern set {name!r} in {self.path}; it has {names or 'none'}")
        return self._group["patterns"][name]

    def info(self) -> dict[str, Any]:
        """A JSON-friendly summary: size, molecule, sampling, chunks done, pattern sets."""
        a = self.attrs
        flags = _done_flags(self._group["done"], self.path, "sampling")
        sets = {k: {"probe": v["probe"], "signal": v["signal"], "energy_kev": v["energy_kev"],
                    "q": f"{v['q'][0]:g}..{v['q'][-1]:g} Å⁻¹ ({len(v['q'])} points)", "complete": v["complete"]}
                for k, v in self.pattern_sets().items()}
        return {"path": self.path, "size": len(self), "molecule": a["molecule"], "atoms": len(a["numbers"]),
                "method": a["method"], "temperature_K": a["temperature"], "seed": a["seed"], "params": a["params"],
                "chunk": a["chunk"], "chunks_done": f"{int(flags.sum())}/{flags.size}",
                "geometries_done": self.done_count(), "complete": bool(flags.all()), "pattern_sets": sets,
                "created_by": a["created_by"]}

    def done_count(self) -> int:
        """The number of geometries in finished chunks (``len(self)`` once :attr:`complete`)."""
        C, B = int(self.attrs["chunk"]), len(self)
        flags = _done_flags(self._group["done"], self.path, "sampling")
        return int(sum(min(C, B - int(c) * C) for c in np.flatnonzero(flags)))

    # ---- computing -------------------------------------------------------------------------------------------

    def simulate(self, q, probe: str = "xray", signal: str = "molecular", name: str | None = None, *,
                 energy_kev: float | None = None, progress: bool = True, scheduler=None) -> str:
        """Compute (or finish computing) a pattern set: :func:`xstructure.simulate` of every geometry.

        Parameters
        ----------
        q : array_like
            (Q,) momentum transfer in Å⁻¹.
        probe, signal, energy_kev : optional
            as for :func:`xstructure.simulate`.
        name : str or None, optional
            the set's name (letters, digits, ``_.-``); default ``f"{probe}_{signal}"``.  A set of that
            name made with the same q, probe, signal and energy is resumed; with others, ValueError.
        progress : bool, optional
            progress bar over geometries.
        scheduler : str, distributed.Client or None, optional
            None, or a dask.distributed scheduler address or Client (see :meth:`create`).

        Returns
        -------
        str
            The set's name; read it with :meth:`patterns`.
        """
        if probe not in PROBES:
            raise ValueError(f"unknown probe {probe!r}: use one of {PROBES}")
        if signal not in SIGNALS:
            raise ValueError(f"unknown signal {signal!r}: use one of {SIGNALS}")
        q = as_q(q)
        energy_kev = None if energy_kev is None else float(energy_kev)
        name = f"{probe}_{signal}" if name is None else name
        if not isinstance(name, str) or not _PATTERN_NAME.match(name):
            raise ValueError(f"pattern set name must be letters, digits and _.- (not starting with . or -), "
                             f"got {name!r}")
        flags = _done_flags(self._group["done"], self.path, "sampling")
        if not flags.all():
            raise ValueError(f"{self.path}: only {int(flags.sum())} of {flags.size} sampling chunks are done; "
                             "rerun Pool.create (xstructure pool create) with the same arguments to finish it")
        import zarr  # loaded on use: keeps `import xstructure` fast

        sets = self.pattern_sets()
        if name in sets:
            s = sets[name]
            if (s["probe"], s["signal"], s["energy_kev"]) != (probe, signal, energy_kev) or not np.array_equal(
                    s["q"], q):
                raise ValueError(f"pattern set {name!r} exists with probe={s['probe']}, signal={s['signal']}, "
                                 f"energy_kev={s['energy_kev']} and {len(s['q'])} q points "
                                 f"{s['q'][0]:g}..{s['q'][-1]:g}; choose another name for the new set "
                                 "(--name, or name=)")
        else:
            B, C = len(self), int(self.attrs["chunk"])
            sub, tmp = new_store_dir(self.path)  # beside the store: a killed run leaves no stray group in it
            try:
                sub.create_array("q", data=q)
                sub.create_array("I", shape=(B, q.size), chunks=(C, q.size), dtype="float64", fill_value=np.nan,
                                 compressors=compressors(), dimension_names=("geometry", "q"))
                sub.create_array("done", shape=(flags.size,), chunks=(flags.size,), dtype="bool", fill_value=False)
                sub.attrs.update({"probe": probe, "signal": signal, "energy_kev": energy_kev})
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            move_in(tmp, os.path.join(self.path, "patterns", name))

        group = zarr.open_group(store=self.path, mode="r+", zarr_format=3)
        done = group["patterns"][name]["done"]
        pflags = _done_flags(done, self.path, f"pattern set {name!r}")
        C, B = int(self.attrs["chunk"]), len(self)
        pending = [int(i) for i in np.flatnonzero(~pflags)]
        try:
            _run_chunks(self.path, done, pending, [min(C, B - i * C) for i in pending], _simulate_chunk, (name,),
                        progress=progress, scheduler=scheduler, desc=f"pool-{name}")
        finally:
            self._group = open_group(self.path, "r")
        return name

    def nearest(self, pattern, name: str | None = None):
        """The pool member whose stored pattern is closest to ``pattern`` in least squares (the classical pool fit).

        Parameters
        ----------
        pattern : array_like
            (Q,) or (M, Q) pattern(s) on the set's q grid, in the set's unit.
        name : str or None, optional
            The pattern set; may be left out when the pool has exactly one.

        Returns
        -------
        index : int or numpy.ndarray
            The member's index; (M,) for several patterns.
        distance : float or numpy.ndarray
            sqrt(Σ_q (I − pattern)²) in the set's unit; (M,) for several. Rows of unfinished chunks are skipped.

        Raises
        ------
        ValueError
            A pattern of the wrong length, NaN or inf, or a set without a finished chunk.
        """
        sub = self._pattern_group(name)
        I, Q = sub["I"], sub["q"].shape[0]
        P = np.asarray(pattern, dtype=np.float64)
        single = P.ndim == 1
        P = np.atleast_2d(P)
        if P.ndim != 2 or P.shape[1] != Q:
            raise ValueError(f"pattern must have shape (Q,) or (M, Q) with Q = {Q}, got {np.shape(pattern)}")
        if not np.all(np.isfinite(P)):
            raise ValueError("pattern contains NaN or inf")
        flags = _done_flags(sub["done"], self.path, "pattern set")
        best = np.full(len(P), np.inf)
        index = np.full(len(P), -1, dtype=np.int64)
        C = int(self.attrs["chunk"])
        for i in np.flatnonzero(flags):
            a = int(i) * C
            block = I[a:a + C]
            for m, p in enumerate(P):
                d2 = np.einsum("bq,bq->b", block - p, block - p)
                k = int(np.argmin(d2))
                if d2[k] < best[m]:
                    best[m], index[m] = d2[k], a + k
        if np.any(index < 0):
            raise ValueError(f"pattern set has no finished chunk in {self.path}")
        dist = np.sqrt(best)
        return (int(index[0]), float(dist[0])) if single else (index, dist)

    def summary_plot(self, path, max_members: int = 20000):
        """Figure of the pool: bond-length distributions per bond type, the RMSD to the reference, and for every
        pattern set its mean pattern with the 5–95 % band of the members, and their spread about the mean.

        Bonds are the reference's atom pairs closer than 1.2 × the sum of covalent radii.  Distributions and
        percentile bands use up to ``max_members`` evenly strided members; means use every finished chunk.  Total
        and atomic intensities are drawn on a logarithmic axis and their spread as a relative deviation (%); the
        molecular intensity as q·I_mol(q), whose oscillations keep their size at high q.

        Parameters
        ----------
        path : str or None
            Output image file (any matplotlib format); None leaves the figure open.
        max_members : int, optional
            Members sampled for the distributions and bands.

        Returns
        -------
        matplotlib.figure.Figure

        Raises
        ------
        ValueError
            No chunk of the pool is finished (an interrupted create: run it again first).
        """
        import sys

        if self.done_count() == 0:
            raise ValueError(f"{self.path} has no finished geometries yet: run the same pool create command again "
                             "to finish it, then plot")
        import matplotlib  # plotting only

        if "matplotlib.pyplot" not in sys.modules:   # else keep the caller's backend (switching closes figures)
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # plotting only
        import matplotlib.ticker  # plotting only
        from ase.data import (
            chemical_symbols,  # loaded on use: keeps `import xstructure` fast
        )

        Z, ref = self.numbers, self.reference
        i, j = np.nonzero(np.triu(bond_graph(Z, ref)))
        kinds = {}
        for a, b in zip(i, j):
            s = "–".join(sorted((chemical_symbols[Z[a]], chemical_symbols[Z[b]])))
            kinds.setdefault(s, []).append((a, b))
        C, B = int(self.attrs["chunk"]), len(self)
        flags = _done_flags(self._group["done"], self.path, "sampling")
        stride = max(1, math.ceil(B / max_members))
        lengths = {k: [] for k in kinds}
        rms = []
        for c in np.flatnonzero(flags):
            a = int(c) * C
            first = (-a) % stride
            pos = self.positions[a + first:min(B, a + C):stride]
            if len(pos) == 0:
                continue
            for k, pairs in kinds.items():
                p = np.asarray(pairs)
                lengths[k].append(np.linalg.norm(pos[:, p[:, 0]] - pos[:, p[:, 1]], axis=-1).ravel())
            rms.append(np.atleast_1d(rmsd(ref, pos)))
        members = sum(len(r) for r in rms)
        sets = self.pattern_sets()
        ncol = 2 + len(sets)
        fig = plt.figure(figsize=(4.4 * ncol, 4.6), layout="constrained")
        grid = fig.add_gridspec(2, ncol, height_ratios=[2.2, 1])
        ax = fig.add_subplot(grid[:, 0])
        for k, v in sorted(lengths.items()):
            if v:
                x = np.concatenate(v)
                ax.hist(x, bins=int(np.clip(np.sqrt(len(x)), 10, 60)), histtype="step", density=True, lw=1.2,
                        label=f"{k} ({len(kinds[k])} bond{'s' if len(kinds[k]) > 1 else ''})")
        ax.set_xlabel("bond length (Å)")
        ax.set_ylabel("probability density (Å⁻¹)")
        ax.set_title("bond lengths by type", fontsize=10)
        if kinds:
            ax.legend(frameon=False, fontsize="small")
        ax = fig.add_subplot(grid[:, 1])
        if rms:
            r = np.concatenate(rms)
            ax.hist(r, bins=int(np.clip(np.sqrt(len(r)), 10, 80)), histtype="stepfilled", alpha=0.6, color="C0", edgecolor="C0")
            ax.axvline(np.median(r), color="k", lw=1.0, ls="--", label=f"median {np.median(r):.3f} Å")
            ax.legend(frameon=False, fontsize="small")
        ax.set_xlabel("RMSD to the reference (Å)")
        ax.set_ylabel("members per bin")
        ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_title("RMSD to the reference geometry", fontsize=10)
        for col, (name, s) in enumerate(sets.items(), start=2):
            top, low = fig.add_subplot(grid[0, col]), None
            low = fig.add_subplot(grid[1, col], sharex=top)
            sub = self._group["patterns"][name]
            pf = _done_flags(sub["done"], self.path, "pattern set")
            tot, cnt, rows = 0.0, 0, []
            for c in np.flatnonzero(pf):
                a = int(c) * C
                block = np.asarray(sub["I"][a:a + C], dtype=np.float64)
                tot, cnt = tot + block.sum(0), cnt + len(block)
                rows.append(block[(-a) % stride::stride])
            q = np.asarray(s["q"], dtype=np.float64)
            signal, probe = s["signal"], s["probe"]
            weight = q if signal == "molecular" else 1.0
            label = signal_label(probe, signal, q_weighted=signal == "molecular")
            if cnt:
                mean = tot / cnt
                sample = np.concatenate(rows)
                lo, hi = np.percentile(sample, [5, 95], axis=0)
                top.fill_between(q, weight * lo, weight * hi, color="C0", alpha=0.3, lw=0, label="5–95 % of members")
                top.plot(q, weight * mean, color="C0", lw=1.2, label="mean")
                relative = signal in ("total", "atomic") and bool(np.all(mean > 0))
                if relative:
                    top.set_yscale("log")
                    dev = 100.0 * (sample / mean - 1.0)
                    low.set_ylabel(f"$\\Delta {_SYM[signal]} / {_SYM[signal]}$ (%)")
                else:
                    dev = weight * (sample - mean)
                    low.set_ylabel(signal_label(probe, signal, delta=True, q_weighted=signal == "molecular"))
                d5, d25, d75, d95 = np.percentile(dev, [5, 25, 75, 95], axis=0)
                low.fill_between(q, d5, d95, color="C0", alpha=0.25, lw=0, label="5–95 %")
                low.fill_between(q, d25, d75, color="C0", alpha=0.5, lw=0, label="25–75 %")
                low.axhline(0, color="k", lw=0.8)
                low.text(0.01, 0.95, "members − mean", transform=low.transAxes, ha="left", va="top",
                         fontsize="x-small", color="0.3")
                low.legend(frameon=False, fontsize="x-small", ncol=2, loc="lower right")
                top.legend(frameon=False, fontsize="small")
            if signal in ("sM", "molecular"):
                top.axhline(0, color="0.6", lw=0.6, zorder=0)
            top.set_ylabel(label)
            top.tick_params(labelbottom=False)
            top.set_xlim(q[0], q[-1])
            low.set_xlabel(r"$q$ (Å⁻¹)")
            kind = "X-ray" if probe == "xray" else "electron"
            top.set_title(f"pattern set {name!r}: {kind}, {signal}\n{cnt} patterns"
                          + (f", bands from {sum(len(r) for r in rows)}" if stride > 1 and cnt else ""), fontsize=10)
        mol = self.attrs["molecule"]
        formula = mol.get("formula")
        formula = re.sub(r"(\d+)", r"$_{\1}$", formula) if formula and formula != mol["name"] else None
        fig.suptitle(f"pool of {mol['name']}" + (f" ({formula})" if formula else "")
                     + f": {B} members, {self.attrs['method']} sampling at {self.attrs['temperature']:g} K"
                     + (f" ({members} sampled for the distributions)" if stride > 1 else ""), fontsize=11)
        if path is not None:
            fig.savefig(path, dpi=150)
            plt.close(fig)
        return fig


_SYM = {"total": r"I_{\mathrm{tot}}", "atomic": r"I_{\mathrm{at}}"}


def _short(v) -> str:
    text = json.dumps(v)
    return text if len(text) <= 60 else text[:57] + "..."
