"""Training, checkpoints and evaluation of the crystal (phase-problem) models of :mod:`.phase`.

A model directory holds ``config.json`` (format tag, model kind and hyperparameters, the crystal set's H, σ
and 2θ grid) and ``model.safetensors`` (weights of the best epoch); while training also ``last.safetensors``
(weights + optimizer) and ``state.json``, so a stopped run resumes.  Every epoch's shuffling and noise come from
``default_rng([seed, epoch])``.  Nothing is unpickled.

Evaluation (:func:`evaluate_phase`) predicts on the n³ training grid and brings the prediction to 50³ by Fourier
interpolation (zero-padding its coefficients; the true densities themselves interpolate so to SSIM 0.999), then
scores against ``crystal.density_grid`` computed directly at 50³:

* ``ssim``: one sample (z = μ for the variational model), aligned by the best shift and inversion;
* ``ssim_best``: the protocol of Guo et al. (2024), the best of 5 samples × the 24 cube rotations: the
  candidates are ranked by aligned correlation with the truth on the 24³ grid, and SSIM on 50³ is computed for
  the plain sample and the 3 best (:func:`.phase.rank_candidates`);
* ``atom_recovery`` (:func:`.phase.atom_recovery`) and ``r_factor`` against the observed amplitudes.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

from ..crystal import as_cell
from ..crystal.phasing import cell_atoms
from . import phase
from .crystals import CrystalSet
from .train import load_optimizer, load_safetensors, optimizer_tensors, save_safetensors, write_json

__all__ = ["PhaseConfig", "train_phase", "PhaseModel", "evaluate_phase", "format_phase_table", "phase_plot",
           "PhaseData", "FORMAT"]

FORMAT = "xstructure-phase-model"
VERSION = 1
GRID_EVAL = 50


@dataclass
class PhaseConfig:
    """Hyperparameters and schedule of a crystal model's training run (stored in its ``config.json``).

    Parameters
    ----------
    model : {'mlp', 'mlp_mse', 'unet', 'coord'}, optional
        The network (see :data:`xstructure.learn.phase.MODELS`).
    n : int, optional
        Output grid n³ (fractional frame).
    hidden : int, optional
        ``mlp``, ``mlp_mse``: hidden units.
    channels : int, optional
        ``unet``: channels of the first level.
    latent : int, optional
        ``coord``: latent dimension.
    width : int, optional
        ``coord``: width of the coordinate MLP.
    epochs : int, optional
        Most epochs.
    batch : int, optional
        Crystals per batch.
    lr : float, optional
        Learning rate (Adam).
    weight_decay : float, optional
        Weight decay.
    patience : int, optional
        Epochs without a better validation loss before stopping.
    w_phys : float, optional
        Weight of the physics-consistency loss (``|F|`` of the prediction against the observed amplitudes).
    w_kl : float, optional
        ``coord``: weight of the latent's KL divergence to N(0, 1).
    noise : float, optional
        Relative Gaussian noise on the inputs (``|F|`` and powder), per point.
    seed : int, optional
        Seed of the initial weights, the shuffling and the noise.
    threads : int, optional
        torch CPU threads (0: torch's default).
    max_minutes : float or None, optional
        Time budget of the run.
    """
    model: str = "mlp"
    n: int = 24                  # output grid (fractional frame)
    hidden: int = 100            # mlp
    channels: int = 8            # unet
    latent: int = 64             # coord
    width: int = 128             # coord
    epochs: int = 30
    batch: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 6
    w_phys: float = 0.0          # physics consistency: |F| of the prediction vs the observed amplitudes
    w_kl: float = 1e-3           # coord: KL of the latent to N(0, 1)
    noise: float = 0.0           # relative Gaussian noise on the inputs (|F| and powder), per point
    seed: int = 0
    threads: int = 0
    max_minutes: float | None = None

    @property
    def loss(self) -> str:
        """The loss: ``"mse"`` for ``mlp_mse``, else ``"aligned"`` (:func:`~xstructure.learn.phase.aligned_mse`)."""
        return "mse" if self.model == "mlp_mse" else "aligned"

    def hparams(self) -> dict:
        """The network's constructor options of this configuration.

        Returns
        -------
        dict
            Option name -> value.
        """
        return {"mlp": {"hidden": self.hidden}, "mlp_mse": {"hidden": self.hidden},
                "unet": {"channels": self.channels},
                "coord": {"latent": self.latent, "width": self.width}}.get(self.model, {})


class PhaseData:
    """In-memory arrays of one split of a crystal set: inputs, and targets on the n³ grid.

    Parameters
    ----------
    cs : CrystalSet
        The set.
    idx : array_like
        (B,) crystal indices.
    n : int
        Grid size of the targets.
    targets : bool, optional
        Compute the target densities.

    Attributes
    ----------
    intensity : numpy.ndarray
        (B, L, L, L) ``|F|²`` boxes.
    amplitudes : numpy.ndarray
        (B, L, L, L) ``|F|/F(000)``.
    box : numpy.ndarray
        (B, L, L, L) network features (:func:`~xstructure.learn.phase.box_features`).
    powder : numpy.ndarray
        (B, n_powder) powder patterns.
    comp : numpy.ndarray
        (B, 119) compositions.
    structures : list
        Per crystal (cell (3, 3) Å, frac (n, 3), numbers (n,)).
    target : numpy.ndarray or None
        (B, n, n, n) float32 normalised target densities.
    """

    def __init__(self, cs: CrystalSet, idx, n: int, targets: bool = True):
        self.set, self.idx = cs, np.asarray(idx)
        I = cs.intensity.get_orthogonal_selection((self.idx,)).astype(np.float64)
        H = cs.hmax
        self.intensity = I
        self.amplitudes = np.sqrt(I) / np.sqrt(np.maximum(I[:, H, H, H], 1e-300)).reshape(-1, 1, 1, 1)
        self.box = phase.box_features(I)
        self.powder = cs.powder.get_orthogonal_selection((self.idx,)).astype(np.float32)
        self.comp = cs.composition(self.idx)
        self.structures = cs.structures(self.idx)
        self.target = phase.normalised_density(cs.density(self.idx, n, self.structures)).astype(np.float32) \
            if targets else None

    def __len__(self) -> int:
        return len(self.idx)


def _noisy(x: np.ndarray, level: float, rng) -> np.ndarray:
    if level <= 0:
        return x
    return np.clip(x * (1 + level * rng.standard_normal(x.shape)), 0, None).astype(np.float32)


def _inputs(data: PhaseData, sel, noise: float, rng):
    import torch  # optional dependency (torch)

    box = data.box[sel]
    if noise > 0:   # noise on |F|, then the features' sqrt
        box = np.sqrt(_noisy(box ** 2, noise, rng))
    return (torch.as_tensor(box), torch.as_tensor(_noisy(data.powder[sel], noise, rng)),
            torch.as_tensor(data.comp[sel]))


def _loss(cfg: PhaseConfig, net, pred, target, amplitudes):
    import torch  # optional dependency (torch)

    loss = phase.aligned_mse(pred, target) if cfg.loss == "aligned" else torch.mean((pred - target) ** 2)
    if cfg.w_phys > 0:
        H = amplitudes.shape[-1] // 2
        loss = loss + cfg.w_phys * torch.mean((phase.box_amplitudes(pred, H).abs() - amplitudes) ** 2) * 1e3
    if cfg.model == "coord" and cfg.w_kl > 0:
        loss = loss + cfg.w_kl * net.kl
    return loss


def train_phase(cs: CrystalSet | str, out_dir: str, config: PhaseConfig | None = None, *, progress: bool = True,
                resume: bool = True, split_seed: int = 0, n_test: int = 500, n_val: int = 200, limit: int | None = None,
                log=print) -> "PhaseModel":
    """Train one crystal model on a set's training split; the best validation epoch is kept.

    Parameters
    ----------
    cs : CrystalSet or str
        The crystal set (or its path).
    out_dir : str
        The model directory (created; an interrupted run in it resumes).
    config : PhaseConfig or None, optional
        Hyperparameters (default: :class:`PhaseConfig`'s).
    progress : bool, optional
        Log each epoch.
    resume : bool, optional
        Continue an interrupted run in ``out_dir``.
    split_seed : int, optional
        Seed of the set's split (see :meth:`CrystalSet.split <xstructure.learn.crystals.CrystalSet.split>`).
    n_test, n_val : int, optional
        Test and validation crystals.
    limit : int or None, optional
        Use only the first ``limit`` training crystals.
    log : callable, optional
        Receives the progress lines.

    Returns
    -------
    PhaseModel
        The best epoch's model.

    Raises
    ------
    ValueError
        An unknown model or an incomplete set.
    """
    import torch  # optional dependency (torch)
    from tqdm.auto import tqdm  # loaded on use: keeps `import xstructure` fast

    cfg = config or PhaseConfig()
    if cfg.model not in phase.MODELS:
        raise ValueError(f"unknown crystal model {cfg.model!r}: use one of {', '.join(phase.MODELS)}")
    cs = CrystalSet.open(cs) if isinstance(cs, str) else cs
    if not cs.complete:
        raise ValueError(f"{cs.path} is not complete: run the create command again to finish it")
    split = cs.split(split_seed, n_test, n_val)
    tr_idx = split["train"][:limit] if limit else split["train"]
    os.makedirs(out_dir, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    torch.manual_seed(cfg.seed)
    t_load = time.perf_counter()
    train_d, val_d = PhaseData(cs, tr_idx, cfg.n), PhaseData(cs, split["val"], cfg.n)
    log(f"{cs.path}: {len(train_d)} training and {len(val_d)} validation crystals loaded in "
        f"{time.perf_counter() - t_load:.0f} s")
    L = 2 * cs.hmax + 1
    from .crystal_models import (
        build_model,  # torch is optional: the networks load with it
    )

    net = build_model(cfg.model, L, cfg.n, len(cs.two_theta), **cfg.hparams())
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    config_json = {"format": FORMAT, "version": VERSION, "config": asdict(cfg), "hmax": cs.hmax, "sigma": cs.sigma,
                   "two_theta": cs.attrs["two_theta"], "system": cs.attrs["system"], "split_seed": split_seed,
                   "n_test": n_test, "n_val": n_val, "set": os.path.abspath(cs.path)}
    state_path, last_path = os.path.join(out_dir, "state.json"), os.path.join(out_dir, "last.safetensors")
    state = {"epoch": 0, "best": float("inf"), "best_epoch": -1, "bad": 0, "history": [], "seconds": 0.0}
    if resume and os.path.exists(state_path) and os.path.exists(last_path):
        with open(state_path) as f:
            saved = json.load(f)
        if saved.get("config") != config_json:
            raise ValueError(f"{out_dir} holds a run with another configuration; use another --out or --restart")
        tensors = load_safetensors(last_path)
        net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        load_optimizer(opt, tensors, saved["optimizer"])
        state = saved["state"]
        log(f"resuming at epoch {state['epoch']} (best val {state['best']:.4f} at epoch {state['best_epoch']})")
    write_json(config_json, os.path.join(out_dir, "config.json"))
    vin = _inputs(val_d, np.arange(len(val_d)), 0.0, None)
    vt = torch.as_tensor(val_d.target)
    steps_per_epoch = math.ceil(len(train_d) / cfg.batch)
    t0 = time.perf_counter() - state["seconds"]
    while state["epoch"] < cfg.epochs and state["bad"] < cfg.patience:
        if cfg.max_minutes and (time.perf_counter() - t0) / 60 > cfg.max_minutes:
            log(f"time budget of {cfg.max_minutes:g} min reached")
            break
        ep = state["epoch"]
        rng = np.random.default_rng([cfg.seed, ep])
        order = rng.permutation(len(train_d))
        net.train()
        total = 0.0
        for s in tqdm(range(steps_per_epoch), desc=f"epoch {ep + 1}/{cfg.epochs}", disable=not progress,
                      leave=False):
            frac = (ep * steps_per_epoch + s) / (cfg.epochs * steps_per_epoch)
            for g in opt.param_groups:
                g["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))
            sel = order[s * cfg.batch:(s + 1) * cfg.batch]
            box, powder, comp = _inputs(train_d, sel, cfg.noise, rng)
            pred = net(box, powder, comp)
            loss = _loss(cfg, net, pred, torch.as_tensor(train_d.target[sel]),
                         torch.as_tensor(train_d.amplitudes[sel]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(sel)
        net.eval()
        with torch.no_grad():
            vl = 0.0
            for s in range(0, len(val_d), 128):
                p = net(*(x[s:s + 128] for x in vin))
                vl += float(phase.aligned_mse(p, vt[s:s + 128])) * len(p)
            vl /= len(val_d)
        state["epoch"] = ep + 1
        state["history"].append({"epoch": ep + 1, "train_loss": total / len(train_d), "val_aligned_mse": vl})
        if vl < state["best"] - 1e-6:
            state.update(best=vl, best_epoch=ep + 1, bad=0)
            save_safetensors(dict(net.state_dict()), os.path.join(out_dir, "model.safetensors"),
                              metadata={"format": FORMAT})
        else:
            state["bad"] += 1
        state["seconds"] = time.perf_counter() - t0
        otensors, ometa = optimizer_tensors(opt)
        save_safetensors({**{f"net.{k}": v for k, v in net.state_dict().items()}, **otensors}, last_path)
        write_json({"config": config_json, "state": state, "optimizer": ometa}, state_path)
        log(f"epoch {ep + 1}: train {total / len(train_d):.4f}  val aligned MSE {vl:.4f}"
            f"{' (best)' if state['best_epoch'] == ep + 1 else ''}")
    return PhaseModel.load(out_dir)


class PhaseModel:
    """A trained crystal model: :meth:`predict` maps ``|F|²`` boxes, or powder patterns with compositions, to densities.

    Parameters
    ----------
    net : torch.nn.Module
        The trained network.
    config : dict
        The model directory's ``config.json``.
    """

    def __init__(self, net, config: dict):
        self.net, self.config = net, config
        self.cfg = PhaseConfig(**config["config"])

    @classmethod
    def load(cls, path: str) -> "PhaseModel":
        """Load a model directory written by :func:`train_phase`.

        Parameters
        ----------
        path : str
            The directory.

        Returns
        -------
        PhaseModel
            The model, in evaluation mode.

        Raises
        ------
        ValueError
            Not a crystal-model directory, another format version, or weights that do not fit the config.
        """
        cfg_path = os.path.join(path, "config.json")
        if not os.path.isfile(cfg_path):
            raise ValueError(f"{path}: no config.json (not a model directory)")
        try:
            with open(cfg_path) as f:
                config = json.load(f)
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{cfg_path} is not readable JSON: {exc}") from None
        if config.get("format") != FORMAT:
            raise ValueError(f"{path} is not an xstructure crystal model (format {config.get('format')!r})")
        if config.get("version") != VERSION:
            raise ValueError(f"{path}: crystal model version {config.get('version')!r}, this xstructure reads "
                             f"{VERSION}")
        cfg = PhaseConfig(**config["config"])
        L = 2 * int(config["hmax"]) + 1
        from .crystal_models import (
            build_model,  # torch is optional: the networks load with it
        )

        net = build_model(cfg.model, L, cfg.n, int(config["two_theta"][2]), **cfg.hparams())
        weights = os.path.join(path, "model.safetensors")
        if not os.path.isfile(weights):
            raise ValueError(f"{path}: no model.safetensors (training has not finished an epoch)")
        tensors = load_safetensors(weights)
        try:
            net.load_state_dict(tensors)
        except RuntimeError as exc:
            raise ValueError(f"{weights} does not fit the {cfg.model} model of config.json: {exc}") from None
        net.eval()
        return cls(net, config)

    @property
    def hmax(self) -> int:
        """H of the ``|F|²`` boxes the model reads."""
        return int(self.config["hmax"])

    @property
    def two_theta(self) -> np.ndarray:
        """(n_powder,) 2θ grid of the powder patterns the model reads, degrees."""
        lo, hi, n = self.config["two_theta"]
        return np.linspace(lo, hi, int(n))

    def predict(self, intensity=None, powder=None, composition=None, *, sample: bool = False,
                batch: int = 128) -> np.ndarray:
        """Normalised densities from diffraction data.

        Parameters
        ----------
        intensity : array_like or None, optional
            (B, L, L, L) or (L, L, L) ``|F|²`` boxes, L = 2H + 1 (``mlp``, ``mlp_mse``, ``unet``).
        powder : array_like or None, optional
            (B, n_powder) powder patterns on the model's 2θ grid (``coord``).
        composition : array_like or None, optional
            (B, 119) atom fractions by atomic number (``coord``).
        sample : bool, optional
            ``coord``: draw the latent instead of taking its mean.
        batch : int, optional
            Crystals per forward pass.

        Returns
        -------
        numpy.ndarray
            (B, n, n, n) normalised densities (mean 1), fractional frame.

        Raises
        ------
        ValueError
            Missing or badly shaped inputs, or NaN or inf.
        """
        import torch  # optional dependency (torch)

        L = 2 * self.hmax + 1
        if self.cfg.model == "coord":
            if powder is None or composition is None:
                raise ValueError("the coord model needs powder patterns and compositions")
            powder = np.atleast_2d(np.asarray(powder, dtype=np.float32))
            comp = np.atleast_2d(np.asarray(composition, dtype=np.float32))
            if powder.shape[1] != len(self.two_theta):
                raise ValueError(f"powder patterns have {powder.shape[1]} points, the model's 2θ grid has "
                                 f"{len(self.two_theta)}")
            if comp.shape != (len(powder), 119):
                raise ValueError(f"compositions must have shape ({len(powder)}, 119), got {comp.shape}")
            if not (np.isfinite(powder).all() and np.isfinite(comp).all()):
                raise ValueError("powder pattern or composition contains NaN or inf")
            box = np.zeros((len(powder), L, L, L), np.float32)
        else:
            if intensity is None:
                raise ValueError(f"the {self.cfg.model} model needs |F|² boxes")
            I = np.asarray(intensity, dtype=np.float64)
            I = I[None] if I.ndim == 3 else I
            if I.shape[1:] != (L, L, L):
                raise ValueError(f"|F|² boxes must have shape (B, {L}, {L}, {L}) (H = {self.hmax}), got {I.shape}")
            box = phase.box_features(I)
            powder = np.zeros((len(box), len(self.two_theta)), np.float32)
            comp = np.zeros((len(box), 119), np.float32)
        out = []
        with torch.no_grad():
            for s in range(0, len(box), batch):
                args = [torch.as_tensor(x[s:s + batch]) for x in (box, powder, comp)]
                p = self.net(*args, sample=sample) if self.cfg.model == "coord" else self.net(*args)
                out.append(p.double().numpy())
        return np.concatenate(out) if out else np.zeros((0,) + (self.cfg.n,) * 3)


def fourier_upsample(g: np.ndarray, m: int = GRID_EVAL) -> np.ndarray:
    """A periodic grid (n, n, n) on m³ points by zero-padding its Fourier coefficients (|h| ≤ (n − 1) / 2)."""
    n = g.shape[0]
    H = (n - 1) // 2
    F = np.fft.fftn(g)
    G = np.zeros((m, m, m), dtype=complex)
    ix = np.arange(-H, H + 1)
    G[np.ix_(ix % m, ix % m, ix % m)] = F[np.ix_(ix % n, ix % n, ix % n)]
    return np.fft.ifftn(G).real * (m / n) ** 3


def _score(pred_n, samples_n, data: PhaseData, k: int, gt50, top: int | None):
    c, f, z = data.structures[k]
    p50 = fourier_upsample(pred_n)
    # candidates ranked on the model's grid (cheap), SSIM of the best few on 50³
    cands = phase.rank_candidates(samples_n, data.target[k], top)
    best = max(phase.ssim(fourier_upsample(x), gt50) for x in cands)
    return {"ssim": phase.ssim(p50, gt50), "ssim_best": best,
            "atom_recovery": phase.atom_recovery(p50, c, f, z, data.set.sigma, target=gt50),
            "r_factor": phase.r_factor(pred_n, data.amplitudes[k])}


def _powder_amplitudes(cs: CrystalSet, data: PhaseData) -> np.ndarray:
    """Amplitude boxes extracted from the split's powder patterns, the cells and the set's peak shape known."""
    return np.stack([phase.powder_amplitudes(p, cs.two_theta, s[0], cs.hmax, fwhm=float(cs.attrs["powder_fwhm_deg"]))
                     for p, s in zip(data.powder, data.structures)])


def evaluate_phase(cs: CrystalSet | str, methods: dict, *, split_seed: int = 0, n_test: int = 500, n_val: int = 200,
                   limit: int | None = None, top: int | None = 3, flip: dict | None = None, progress: bool = True,
                   examples: int = 3,
                   flips=("flip", "flip_powder", "mlp+flip", "flip+atoms", "flip_powder+atoms", "mlp+flip+atoms"),
                   atoms: dict | None = None, log=print) -> dict:
    """Scores of every method on the test split of a crystal set.

    Beside the models, as chosen by ``flips``: charge flipping from the ``|F|²`` box (``flip``), from amplitudes
    extracted from the powder pattern (``flip_powder``) and from the phases of an ``mlp`` model (``mlp+flip``);
    atom models (:func:`~xstructure.crystal.phasing.solve_atoms`, the cell's contents from the composition and
    F(000)) refined against the box from random starts (``flip+atoms``, ``atoms["samples"]`` independent
    solutions, default 5, for the best-of protocol); the same from powder-extracted amplitudes, refined against
    the pattern's overlapped groups (``flip_powder+atoms``, ``atoms["powder_samples"]`` solutions, default as
    many; the cell's contents taken as known); and from an ``mlp`` model's phases (``mlp+flip+atoms``, one
    solution).

    Parameters
    ----------
    cs : CrystalSet or str
        The crystal set (or its path).
    methods : dict
        Name -> :class:`PhaseModel`.
    split_seed : int, optional
        Seed of the set's split.
    n_test, n_val : int, optional
        Test and validation crystals of the split.
    limit : int or None, optional
        Score only the first ``limit`` test crystals.
    top : int or None, optional
        Candidates scored by SSIM in the best-of protocol (see :func:`~xstructure.learn.phase.ssim_best`).
    flip : dict or None, optional
        Options of :func:`~xstructure.crystal.phasing.charge_flip` (None: the defaults; ``{}``: skip charge
        flipping and the atom models).
    progress : bool, optional
        Progress bars.
    examples : int, optional
        Test crystals kept for :func:`phase_plot`.
    flips : tuple of str, optional
        Which of the classical methods to run.
    atoms : dict or None, optional
        Options of :func:`~xstructure.crystal.phasing.solve_atoms` (None: the defaults; ``{}``: skip).
    log : callable, optional
        Receives the progress lines.

    Returns
    -------
    dict
        ``"system"``, ``"n_test"``, ``"grid"`` (50), ``"ssim_top"`` and ``"methods"``: name -> mean ``ssim``,
        ``ssim_best``, ``atom_recovery``, ``r_factor``, ``seconds`` and ``per_crystal`` lists; ``"_examples"``
        holds aligned densities for plots (per crystal: ``"true"``, ``"pred"`` by method, ``"ssim"`` by method and
        the crystal's ``"cell"``, a :class:`~xstructure.crystal.Cell`).
    """
    from tqdm.auto import tqdm  # loaded on use: keeps `import xstructure` fast

    cs = CrystalSet.open(cs) if isinstance(cs, str) else cs
    idx = cs.split(split_seed, n_test, n_val)["test"]
    idx = idx[:limit] if limit else idx
    # One line of progress on stderr, a step per method and per solution: charge flipping and the atom models
    # take minutes on a CPU.
    bar = tqdm(desc="evaluate", unit=" steps", disable=not progress, file=sys.stderr, leave=False)

    def stage(what):
        bar.set_description(f"evaluate {len(idx)} test crystals: {what}")
        bar.update()

    stage("reading the test split")
    data = PhaseData(cs, idx, 24)
    gt = [phase.normalised_density(cs.density([i], GRID_EVAL, [st])[0]) for i, st in zip(idx, data.structures)]
    preds, seconds = {}, {}
    for name, model in methods.items():
        stage(name)
        t = time.perf_counter()
        mean = model.predict(data.intensity, data.powder, data.comp)
        samples = [mean] if model.cfg.model != "coord" else \
            [mean] + [model.predict(data.intensity, data.powder, data.comp, sample=True) for _ in range(4)]
        seconds[name] = time.perf_counter() - t
        preds[name] = (mean, samples)
    flip = {"n": 24, "iterations": 200, "starts": 5, "b_keep": 3.0, "delta": 0.9} if flip is None else flip
    atoms = {} if not flip else ({"samples": 5} if atoms is None else atoms)   # atom models start from flipping
    cells = [s[0] for s in data.structures]
    powder_A = []   # the powder's extracted amplitudes, computed once for both powder routes

    def powder_amplitudes():
        if not powder_A:
            powder_A.append(_powder_amplitudes(cs, data))
        return powder_A[0]

    if flip:
        if "flip" in flips:
            stage("charge flipping")
            t = time.perf_counter()
            out = phase.charge_flip(data.amplitudes, cells=cells, b_atoms=cs.b_factor, **flip)
            seconds["flip"] = time.perf_counter() - t
            preds["flip"] = (out, [out])
        if "flip_powder" in flips:
            stage("charge flipping from the powder pattern")
            t = time.perf_counter()
            out = phase.charge_flip(powder_amplitudes(), cells=cells, b_atoms=cs.b_factor, **flip)
            seconds["flip_powder"] = time.perf_counter() - t
            preds["flip_powder"] = (out, [out])
        for name in [m for m in methods if methods[m].cfg.model == "mlp" and "mlp+flip" in flips]:
            stage(f"charge flipping from {name}")
            t = time.perf_counter()
            out = phase.charge_flip(data.amplitudes, cells=cells, b_atoms=cs.b_factor, start=preds[name][0], **flip)
            seconds[f"{name}+flip"] = seconds[name] + time.perf_counter() - t
            preds[f"{name}+flip"] = (out, [out])
    if atoms and {"flip+atoms", "flip_powder+atoms", "mlp+flip+atoms"} & set(flips):
        # the cell's contents from the inputs: composition and F(000) = sqrt of the box's central |F|²
        H = cs.hmax
        contents = [phase.cell_contents(c, math.sqrt(i[H, H, H])) for c, i in zip(data.comp, data.intensity)]
        opts = {k: v for k, v in atoms.items() if k not in ("samples", "powder_samples")}
        if "flip+atoms" in flips:
            t = time.perf_counter()
            sols = []
            for s in range(atoms.get("samples", 5)):
                stage(f"atom model {s + 1} of {atoms.get('samples', 5)}")
                sols.append(phase.solve_atoms(data.amplitudes, cells, contents, cs.b_factor, seed=s, **opts)["density"])
            seconds["flip+atoms"] = time.perf_counter() - t
            preds["flip+atoms"] = (sols[0], sols)
        if "flip_powder+atoms" in flips:   # the cell's contents taken as known (here: from the box's F(000))
            t = time.perf_counter()
            A = powder_amplitudes()
            groups = np.stack([phase.powder_groups(cs.two_theta, c, cs.hmax, fwhm=float(cs.attrs["powder_fwhm_deg"]))
                               for c in cells])
            sols = []
            n_sols = atoms.get("powder_samples", atoms.get("samples", 5))
            for s in range(n_sols):
                stage(f"atom model {s + 1} of {n_sols} from the powder pattern")
                sol = phase.solve_atoms(A, cells, contents, cs.b_factor, seed=s, groups=groups, **opts)
                sols.append(sol["density"])
            seconds["flip_powder+atoms"] = time.perf_counter() - t
            preds["flip_powder+atoms"] = (sols[0], sols)
        for name in [m for m in methods if methods[m].cfg.model == "mlp" and "mlp+flip+atoms" in flips]:
            stage(f"atom model from {name}")
            t = time.perf_counter()
            out = phase.solve_atoms(data.amplitudes, cells, contents, cs.b_factor, start=preds[name][0],
                                    **opts)["density"]
            seconds[f"{name}+flip+atoms"] = seconds[name] + time.perf_counter() - t
            preds[f"{name}+flip+atoms"] = (out, [out])
    bar.close()
    rep = {"system": cs.attrs["system"], "n_test": len(idx), "grid": GRID_EVAL, "ssim_top": top, "methods": {}}
    for name, (mean, samples) in preds.items():
        rows = [_score(mean[k], [s[k] for s in samples], data, k, gt[k], top)
                for k in tqdm(range(len(idx)), desc=f"scoring {name}", disable=not progress, leave=False)]
        agg = {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}
        agg["seconds"] = seconds[name]
        agg["per_crystal"] = {key: [r[key] for r in rows] for key in rows[0]}
        rep["methods"][name] = agg
        log(f"{cs.attrs['system']} {name}: SSIM {agg['ssim']:.3f}, best-of {agg['ssim_best']:.3f}, "
            f"atoms {agg['atom_recovery']:.3f}, R {agg['r_factor']:.3f}")
    rep["_examples"] = [{"true": gt[k], "pred": {n: phase.align(fourier_upsample(p[0][k]), gt[k]) for n, p in
                                                 preds.items()},
                         "ssim": {n: rep["methods"][n]["per_crystal"]["ssim"][k] for n in preds},
                         "cell": as_cell(cell_atoms(*data.structures[k]))}
                        for k in range(min(examples, len(idx)))]
    return rep


def format_phase_table(rep: dict) -> str:
    """The report's methods as a text table.

    Parameters
    ----------
    rep : dict
        As :func:`evaluate_phase` returns it.

    Returns
    -------
    str
        One line per method: SSIM, SSIM best-of, atoms found, R-factor, seconds.
    """
    lines = [f"{rep['system']}: {rep['n_test']} test crystals, SSIM on {rep['grid']}³ grids",
             f"{'method':<19}{'SSIM':>8}{'SSIM best-of':>14}{'atoms found':>13}{'R-factor':>10}{'time s':>9}"]
    for name, m in rep["methods"].items():
        lines.append(f"{name:<19}{m['ssim']:>8.3f}{m['ssim_best']:>14.3f}{m['atom_recovery']:>13.3f}"
                     f"{m['r_factor']:>10.3f}{m['seconds']:>9.1f}")
    return "\n".join(lines)


def _cell_text(cell) -> str:
    """'Rh (Z = 24), a = 8.89 Å' style: a crystal's formula unit and cell, short."""
    from ..plots import math_formula

    (a, b, c), angles = cell.lengths, cell.angles
    if np.allclose([a, b], c, rtol=1e-4) and np.allclose(angles, 90, atol=1e-3):
        geometry = f"a = {a:.2f} Å"
    else:
        geometry = f"a, b, c = {a:.2f}, {b:.2f}, {c:.2f} Å" + (
            "" if np.allclose(angles, 90, atol=1e-3) else ", α, β, γ = " + ", ".join(f"{v:.1f}" for v in angles) + "°")
    return f"{math_formula(cell.reduced_formula)} (Z = {cell.formula_units}), {geometry}"


def phase_plot(rep: dict, path, examples: int = 3):
    """Figure of a few test crystals: the true density and every method's aligned prediction.

    Each density is shown as its projection along c, the maximum of ρ/⟨ρ⟩ over z at each (x, y), so that every
    atom of the cell appears (a single slice may miss them all). A row shares one colour scale, from 0 to the
    truth's maximum, with its colour bar; the densities are normalised to a mean of 1 over the cell.

    Parameters
    ----------
    rep : dict
        As :func:`evaluate_phase` returns it (with ``"_examples"``).
    path : str or None
        Output image file; None leaves the figure open.
    examples : int, optional
        Crystals shown.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import sys
    import textwrap

    import matplotlib  # plotting only

    if "matplotlib.pyplot" not in sys.modules:   # else keep the caller's backend (switching closes its figures)
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # plotting only

    ex = rep.get("_examples", [])[:examples]
    if not ex:
        raise ValueError("the report holds no example predictions (evaluate_phase(..., examples=K))")
    names = list(ex[0]["pred"])
    cols = 1 + len(names)
    fig, axes = plt.subplots(len(ex), cols, figsize=(1.75 * cols + 1.2, 2.05 * len(ex) + 0.9), squeeze=False,
                             sharex=True, sharey=True, layout="constrained")
    for r, e in enumerate(ex):
        grids = [("truth", e["true"])] + [(n, e["pred"][n]) for n in names]
        shown = []
        for name, g in grids:
            g = np.asarray(g, dtype=np.float64)
            mean = g.mean()
            shown.append((name, (g / mean if mean > 0 else g).max(axis=2)))   # max over z: (x, y)
        vmax = shown[0][1].max()
        for c, (name, img) in enumerate(shown):
            ax = axes[r, c]
            im = ax.imshow(img.T, origin="lower", extent=(0, 1, 0, 1), cmap="viridis", vmin=0, vmax=vmax,
                           interpolation="nearest")
            ssim = e["ssim"].get(name)
            ax.set_title(name + (f"\nSSIM {ssim:.2f}" if ssim is not None else "\n(reference)"), fontsize=8)
            ax.set_xticks([0, 0.5, 1])
            ax.set_yticks([0, 0.5, 1])
            ax.tick_params(labelsize=7)
            if r == len(ex) - 1:
                ax.set_xlabel("x (fraction of a)", fontsize=8)
        cell = e.get("cell")
        axes[r, 0].set_ylabel((f"{_cell_text(cell)}\n" if cell is not None else f"crystal {r + 1}\n")
                              + "y (fraction of b)", fontsize=8)
        bar = fig.colorbar(im, ax=axes[r, :].tolist(), shrink=0.9, pad=0.01, extend="max")
        bar.set_label(r"$\rho/\langle\rho\rangle$, max over z (normalised)", fontsize=8)
        bar.ax.tick_params(labelsize=7)
    title = (f"{rep['system']} test crystals: electron density projected along c (maximum over z, normalised to "
             "mean 1), each method aligned to the truth; SSIM of the 3D densities")
    fig.suptitle(textwrap.fill(title, max(40, int(13 * fig.get_figwidth()))), fontsize=9)   # ~13 characters per inch
    if path is not None:
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig
