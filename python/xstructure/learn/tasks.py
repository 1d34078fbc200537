"""The learning workflows behind ``xstructure train``, ``evaluate`` and ``predict``, one call each.

A store or model directory is recognised by its own metadata: a crystal set (:class:`~.crystals.CrystalSet`)
or a molecule pool (:class:`xstructure.Pool`); a crystal phase model (:class:`~.phase_train.PhaseModel`) or an
inversion model (:class:`~.train.InversionModel`).
"""

from __future__ import annotations

import json
import os

import numpy as np

from ..crystal.phasing import cell_from_parameters, composition, solve_box
from ..profiles import read_patterns
from .crystals import CrystalSet
from .data import Noise, load_pool
from .detector import detector_data, with_images
from .evaluate import evaluate, format_table, report_plot, strip_private
from .general import PRETRAINED, GeneralInterpreter, pretrained
from .phase import MODELS as CRYSTAL_MODELS
from .phase_train import FORMAT as PHASE_FORMAT
from .phase_train import PhaseConfig, PhaseModel, evaluate_phase, format_phase_table, phase_plot, train_phase
from .train import MOLECULE_MODELS, InversionModel, TrainConfig, train

__all__ = ["CRYSTAL_MODELS", "MOLECULE_MODELS", "is_crystal_set", "is_phase_model", "task_of", "train_store",
           "evaluate_model", "predict_file"]


def is_crystal_set(path: str) -> bool:
    """Whether a path is a crystal set made by ``xstructure crystals create``.

    Parameters
    ----------
    path : str
        A directory.

    Returns
    -------
    bool
        True for a crystal set.
    """
    try:
        CrystalSet.open(path)
    except ValueError:
        return False
    return True


def is_phase_model(path: str) -> bool:
    """Whether a path is a model directory of the crystal task.

    Parameters
    ----------
    path : str
        A directory.

    Returns
    -------
    bool
        True for a crystal (phase-problem) model.
    """
    try:
        with open(os.path.join(path, "config.json")) as f:
            return json.load(f).get("format") == PHASE_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def task_of(path: str, task: str = "auto", model: str | None = None) -> str:
    """The task of a store: ``"crystal"`` or ``"molecule"``.

    Parameters
    ----------
    path : str
        A pool or a crystal set.
    task : {'auto', 'molecule', 'crystal'}, optional
        The task; ``"auto"``: what the store at ``path`` holds.
    model : str or None, optional
        A model kind, checked against the task.

    Returns
    -------
    str
        ``"crystal"`` or ``"molecule"``.

    Raises
    ------
    ValueError
        A model of the other task.
    """
    task = task if task != "auto" else ("crystal" if is_crystal_set(path) else "molecule")
    if model is not None and (task == "crystal") != (model in CRYSTAL_MODELS):
        raise ValueError(f"model {model!r} is not for the {task} task: use one of "
                         f"{', '.join(CRYSTAL_MODELS if task == 'crystal' else MOLECULE_MODELS)}")
    return task


def train_store(stores, out: str, *, model: str | None = None, task: str = "auto", pattern_set=None,
                limit=None, seed: int = 0, epochs: int = 40, batch: int | None = None, lr: float = 1e-3,
                width: int = 64, layers: int = 2, patience: int = 8, noise: Noise | None = None,
                max_minutes: float | None = None, resume: bool = True, progress: bool = False,
                chi_bins: int = 8, energy_kev: float = 20.0, p2: float = 0.4, w_phys: float = 0.0,
                n_test: int = 500, n_val: int = 200) -> tuple[str, str]:
    """Train a model on pools of molecules (several pools: one model for all) or on one crystal set.

    Parameters
    ----------
    stores : list of str
        Pool stores, or one crystal set.
    out : str
        Model directory; checkpoints are written after every epoch and a second call resumes.
    model : str, optional
        Molecules: 'transformer' (default), 'cnn_gru', 'detector_cnn' (2D images of aligned molecules made
        from the pool's geometries with ``chi_bins``, ``energy_kev`` (keV) and ``p2``); crystals: 'mlp'
        (default), 'mlp_mse', 'unet', 'coord'.
    task : {'auto', 'molecule', 'crystal'}, optional
        What the stores hold (``"auto"``: look).
    pattern_set : str or None, optional
        Molecules: the pools' pattern set (default: the only one).
    limit : int or None, optional
        Use only the first ``limit`` members (or training crystals).
    seed : int, optional
        Seed of the split, the weights, the shuffling and the noise.
    epochs, batch, lr, patience, max_minutes : optional
        As in :class:`~xstructure.learn.train.TrainConfig` and :class:`~xstructure.learn.phase_train.PhaseConfig`;
        ``batch`` defaults to 256 molecules or 32 crystals.
    width, layers : int, optional
        Molecules: token width and decoder layers of the Transformer.
    noise : Noise or None, optional
        Training noise (default 0.5 % Gaussian per q point).
    resume : bool, optional
        Continue an interrupted run in ``out``.
    progress : bool, optional
        Progress output.
    chi_bins : int, optional
        ``detector_cnn``: azimuth bins of the images.
    energy_kev : float, optional
        ``detector_cnn``: photon energy, keV.
    p2 : float, optional
        ``detector_cnn``: ⟨P_2⟩ of the alignment.
    w_phys : float, optional
        Crystals: weight of the ``|F|`` consistency loss.
    n_test, n_val : int, optional
        Crystals: test and validation crystals held out.

    Returns
    -------
    kind : str
        The model kind.
    trained_for : str
        What it was trained for (molecule names, or the crystal set).
    """
    task = task_of(stores[0], task, model)
    model = model or ("mlp" if task == "crystal" else "transformer")
    if task == "crystal":
        if len(stores) != 1:
            raise ValueError("the crystal task trains on one crystal set")
        cfg = PhaseConfig(model=model, epochs=epochs, batch=batch or 32, lr=lr, seed=seed, max_minutes=max_minutes,
                          patience=patience, w_phys=w_phys)
        train_phase(stores[0], out, cfg, progress=progress, resume=resume, limit=limit, n_test=n_test, n_val=n_val)
        return model, stores[0]
    datas = [load_pool(p, pattern_set, seed=seed, limit=limit) for p in stores]
    if model == "detector_cnn":
        datas = [detector_data(d, chi_bins, energy_kev=energy_kev, p2=p2, progress=progress) for d in datas]
    noise = noise or Noise("gaussian", level=0.005)
    cfg = TrainConfig(model=model, d=width, layers=layers, epochs=epochs, batch=batch or 256, lr=lr,
                      noise=noise.to_dict(), seed=seed, max_minutes=max_minutes, patience=patience)
    trained = train(datas if len(datas) > 1 else datas[0], out, cfg, progress=progress, resume=resume)
    return model, ", ".join(m.name for m in trained.molecules)


def evaluate_model(model_path: str, store: str, *, noise: Noise | None = None, n_test: int | None = None,
                   refine_steps: int = 40, seed: int = 0, pattern_set=None, flip: bool = True, json_path=None,
                   plot=None, progress: bool = False) -> str:
    """Score a trained model beside the baselines on the test split of a pool (or crystal set).

    Writes the report as JSON to ``json_path`` and a figure to ``plot`` when given, and returns the table as
    text.

    Parameters
    ----------
    model_path : str
        The model directory.
    store : str
        The pool (or crystal set) to score on.
    noise : Noise or None, optional
        Molecules: noise of the test inputs (default: Gaussian, 0.5 % per q point).
    n_test : int or None, optional
        Score only the first ``n_test`` test members.
    refine_steps : int, optional
        Adam steps of the refinement.
    seed : int, optional
        Seed of the split and the noise.
    pattern_set : str or None, optional
        The pool's pattern set.
    flip : bool, optional
        Crystals: also run the classical methods (charge flipping, atom models).
    json_path : str or None, optional
        Output JSON report.
    plot : str or None, optional
        Output figure (PNG).
    progress : bool, optional
        Progress output.

    Returns
    -------
    str
        The report's table.
    """
    if is_phase_model(model_path):
        model = PhaseModel.load(model_path)
        c = model.config
        rep = evaluate_phase(store, {c["config"]["model"]: model}, split_seed=c["split_seed"], n_test=c["n_test"],
                             n_val=c["n_val"], limit=n_test, flip=None if flip else {}, progress=progress)
        table = format_phase_table(rep)
        draw = lambda path: phase_plot(rep, path)  # noqa: E731
    else:
        model = InversionModel.load(model_path)
        data = load_pool(store, pattern_set, seed=seed)
        if len(data.q) != len(model.q) or not np.allclose(data.q, model.q, rtol=0, atol=1e-9):
            raise ValueError(f"the pool's q grid ({len(data.q)} points) is not the model's ({len(model.q)} points)")
        if model.image is not None:
            data = with_images(data, model.image, progress=progress)
        rep = evaluate(data, noise or Noise("gaussian", level=0.005), models={model.config["model"]: model},
                       n_test=n_test, refine_steps=refine_steps)
        table = format_table(rep)
        draw = lambda path: report_plot(rep, data, path)  # noqa: E731
    if json_path:
        with open(json_path, "w") as f:
            json.dump(strip_private(rep), f, indent=1)
    if plot:
        draw(plot)
    return table


def predict_file(model_path: str, pattern: str, out: str, *, molecule: str | None = None, formula=None,
                 cell=None, cif=None, q=None, signal: str | None = None, noise: float | None = None,
                 temperature: float | None = None, refine_steps: int = 0, iterations: int | None = None,
                 ensemble: str | None = None, search: int = 0) -> str:
    """Structures from a file of patterns (or ``|F|²`` boxes / powder patterns for a crystal model), written to a file.

    Molecules: ``pattern`` is read by :func:`xstructure.profiles.read_patterns`; its q grid, when the file has
    one, must be the model's or cover it (the patterns are then interpolated linearly onto the model's grid, as
    for the curves of ``xstructure integrate``), and a file that names its signal must name the model's. ``out`` is any
    structure format ase writes. Crystals: ``pattern`` is a .npy of ``|F|²`` boxes (or powder patterns for the
    ``coord`` model, with ``formula``); ``out`` a .npy of densities; with ``cif`` (and ``cell``, ``formula``)
    atoms are solved for (charge flipping from the model's phases and an atom model refined against the box) and
    written as CIF.

    Parameters
    ----------
    model_path : str
        The model directory.
    pattern : str
        The input file.
    out : str
        The output file.
    molecule : str or None, optional
        The molecule's name, for a model of several.
    formula : str or None, optional
        Crystals: the chemical formula (e.g. ``"NaCl"``).
    cell : str or None, optional
        Crystals: ``"a,b,c,alpha,beta,gamma"`` (Å, degrees).
    cif : str or None, optional
        Crystals: output CIF of the solved atoms.
    q, signal, noise, temperature, refine_steps, iterations, ensemble, search : optional
        General models (``"general-xray"``, ``"general-electron"`` or a directory of
        :class:`~xstructure.learn.general.GeneralInterpreter`):
        the q grid (Å⁻¹) when the file has none, what the patterns are, their relative noise, the sample's
        temperature (K), refinement steps, calibrated iterations, the reader's ensemble (``"wigner"`` or ``"md"``)
        and the hot samples' multi-start search (see :meth:`~xstructure.learn.general.GeneralInterpreter.predict`).

    Returns
    -------
    str
        A one-line summary.

    Raises
    ------
    ValueError
        An unreadable file, or patterns that do not fit the model.
    """
    import ase  # loaded on use: keeps `import xstructure` fast
    import ase.io  # loaded on use: keeps `import xstructure` fast

    if is_general_model(model_path):
        return _predict_general(model_path, pattern, out, molecule=molecule, q=q, signal=signal, noise=noise,
                                temperature=temperature, refine_steps=refine_steps, iterations=iterations,
                                ensemble=ensemble, search=search)
    given = [k for k, v in (("--q", q), ("--signal", signal), ("--noise", noise), ("--temperature", temperature),
                            ("--refine-steps", refine_steps), ("--iterations", iterations is not None),
                            ("--ensemble", ensemble), ("--search", search)) if v]
    if given:
        raise ValueError(f"{', '.join(given)} apply to general models ({', '.join(PRETRAINED)} or a directory "
                         f"of one) only, not to {model_path}")
    if is_phase_model(model_path):
        return _predict_crystal(model_path, pattern, out, formula=formula, cell=cell, cif=cif)
    model = InversionModel.load(model_path)
    pats = read_patterns(pattern)
    q, intensity, note = pats.q, pats.intensity, ""
    if q is not None and (len(q) != len(model.q) or not np.allclose(q, model.q, rtol=0, atol=1e-6)):
        tol = 1e-6 + 0.5 * float(np.max(np.diff(q))) if len(q) > 1 else 0.0
        if len(q) < 2 or np.any(np.diff(q) <= 0) or q[0] > model.q[0] + tol or q[-1] < model.q[-1] - tol:
            raise ValueError(f"the pattern's q grid ({len(q)} points, {q[0]:g}..{q[-1]:g} Å⁻¹) does not cover the "
                             f"model's ({len(model.q)} points, {model.q[0]:g}..{model.q[-1]:g} Å⁻¹)")
        if not np.isfinite(intensity).all():
            raise ValueError(f"{pattern} holds NaN or inf (empty detector bins?); interpolating onto the model's "
                             "q grid needs finite patterns")
        intensity = np.stack([np.interp(model.q, q, row) for row in intensity])  # linear; ends held
        note = f" (interpolated from {len(q)} to the model's {len(model.q)} q points)"
    want = model.signal
    got = {s for s in (pats.signals or []) if s is not None}
    if want is not None and got and got != {want}:
        raise ValueError(f"{pattern} holds {'/'.join(sorted(got))} patterns; the model was trained on {want} "
                         f"patterns (xstructure simulate --signal {want})")
    mol = model.molecule(molecule)
    pos = model.predict(intensity, mol.name).reshape(-1, len(mol.numbers_np), 3)
    frames = [ase.Atoms(numbers=mol.numbers_np, positions=p) for p in pos]
    ase.io.write(out, frames if len(frames) > 1 else frames[0])
    return f"wrote {len(frames)} structure(s) of {mol.name} to {out}{note}"


def is_general_model(model_path: str) -> bool:
    """Whether ``model_path`` names a shipped general model or a directory holding one."""
    if model_path in PRETRAINED:
        return True
    cfg = os.path.join(model_path, "config.json")
    if not os.path.isfile(cfg):
        return False
    try:
        with open(cfg) as fh:
            return "n_reference" in json.load(fh)
    except (ValueError, OSError):
        return False


def _predict_general(model_path, pattern, out, *, molecule, q, signal, noise, temperature, refine_steps,
                     iterations, ensemble, search) -> str:
    import ase  # loaded on use: keeps `import xstructure` fast
    import ase.io  # loaded on use: keeps `import xstructure` fast

    model = pretrained(model_path) if model_path in PRETRAINED else GeneralInterpreter.load(model_path)
    if not molecule:
        raise ValueError("a general model needs the molecule: --molecule SMILES (or a name or structure file)")
    pats = read_patterns(pattern)
    grid = pats.q if pats.q is not None else q
    if grid is None:
        raise ValueError(f"{pattern} holds no q column: give the grid with --q START:STOP:POINTS (Å⁻¹)")
    if pats.q is not None and q is not None and (len(q) != len(pats.q) or not np.allclose(q, pats.q, atol=1e-6)):
        raise ValueError(f"--q ({len(q)} points, {q[0]:g}..{q[-1]:g} Å⁻¹) disagrees with the q column of {pattern} "
                         f"({len(pats.q)} points, {pats.q[0]:g}..{pats.q[-1]:g} Å⁻¹)")
    got = {s for s in (pats.signals or []) if s is not None}
    if len(got) > 1:
        raise ValueError(f"{pattern} mixes {'/'.join(sorted(got))} patterns; give one signal")
    if got and signal and got != {signal}:
        raise ValueError(f"{pattern} holds {got.pop()} patterns, not --signal {signal}")
    sig = got.pop() if got else (signal or model.config["signal"])
    pos = np.asarray(model.predict(pats.intensity, molecule, grid, signal=sig, noise=noise, temperature=temperature,
                                   refine_steps=refine_steps, iterations=iterations, ensemble=ensemble or "wigner",
                                   search=search))
    atoms = model.atoms_of(molecule)
    frames = [ase.Atoms(numbers=atoms.numbers, positions=p) for p in pos.reshape(-1, len(atoms), 3)]
    ase.io.write(out, frames if len(frames) > 1 else frames[0])
    seen = {True: " (a training molecule)", False: " (not among its training molecules)", None: ""}
    return f"wrote {len(frames)} structure(s) of {atoms.get_chemical_formula()}{seen[_seen(model, molecule)]} to {out}"


def _seen(model, molecule) -> bool | None:
    """Whether a molecule given as SMILES was a training molecule; None when it cannot be looked up."""
    try:
        return model.seen(molecule)
    except ValueError:
        return None


def _predict_crystal(model_path, pattern, out, *, formula, cell, cif) -> str:
    model = PhaseModel.load(model_path)
    if not pattern.endswith((".npy", ".npz")) or not os.path.isfile(pattern):
        raise ValueError(f"crystal input must be an existing .npy file (or the .npz of xstructure crystal "
                         f"--hkl-grid), got {pattern}")
    if not out.endswith(".npy"):
        raise ValueError("the output of a crystal model must be a .npy file (densities, fractional frame)")
    grid_cell = None
    if pattern.endswith(".npz"):   # xstructure crystal FILE --hkl-grid H --out grid.npz: |F|² and the cell
        with np.load(pattern, allow_pickle=False) as f:
            if "intensity" not in f:
                raise ValueError(f"{pattern} holds no 'intensity' array (write it with xstructure crystal FILE "
                                 "--hkl-grid H --out grid.npz)")
            x, grid_cell = f["intensity"], (f["cell"] if "cell" in f else None)
    else:
        x = np.load(pattern, allow_pickle=False)
    if cif and (model.cfg.model == "coord" or not (cell or grid_cell is not None) or not formula):
        raise ValueError("solving for atoms (--cif) needs a model on |F|² boxes (mlp, mlp_mse, unet), the cell "
                         "and the formula")
    if cif:   # a bad cell fails before the model runs
        cell = cell_from_parameters(cell) if cell else np.asarray(grid_cell, dtype=np.float64)
    if model.cfg.model == "coord":
        if not formula:
            raise ValueError("the coord model needs the composition: --formula (e.g. NaCl)")
        x = np.atleast_2d(x)
        rho = model.predict(powder=x, composition=np.repeat(composition(formula)[None], len(x), 0))
    else:
        rho = model.predict(intensity=x)
    lines = []
    if cif:
        import ase.io  # loaded on use: keeps `import xstructure` fast

        sol = solve_box(x, cell, formula, float(model.config["sigma"]), start=rho)
        ase.io.write(cif, sol["atoms"] if len(sol["atoms"]) > 1 else sol["atoms"][0], format="cif")
        rho = sol["density"]
        lines.append(f"wrote {len(sol['atoms'])} refined atom model(s) to {cif} (R = "
                     f"{', '.join(f'{r:.3f}' for r in sol['r'])}; below 0.02 counts as solved)")
    np.save(out, rho if len(rho) > 1 else rho[0])
    lines.append(f"wrote {len(rho)} density grid(s) {rho.shape[1:]} to {out}")
    return "\n".join(lines)

