"""Training, checkpoints and loading of inversion models.

A model directory holds:

* ``config.json``: format tag and version, model kind and hyperparameters, the q grid, probe and signal, the
  noise model used in training, and each molecule (name, atomic numbers, reference geometry);
* ``model.safetensors``: the weights of the best epoch (lowest validation loss) and, per molecule, the
  pattern standardisation (``std.<i>.mean``, ``std.<i>.std``);
* while training: ``last.safetensors`` (weights and optimizer tensors of the last finished epoch) and
  ``state.json`` (epoch, step, best loss, history): a stopped run resumes from there and, since every epoch's
  noise and shuffling are drawn from ``default_rng([seed, epoch, ...])``, continues exactly as it would have.

Nothing is unpickled: tensors are read with safetensors and everything else is JSON.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from ..structures import bond_graph
from .data import Noise, PoolData, Standardizer, heavy_mask, input_shape

__all__ = ["TrainConfig", "train", "InversionModel", "FORMAT", "VERSION", "MOLECULE_MODELS"]

FORMAT = "xstructure-inversion-model"
VERSION = 1
MOLECULE_MODELS = ("transformer", "cnn_gru", "detector_cnn")   # the networks of xstructure.learn.models


@dataclass
class TrainConfig:
    """Hyperparameters and schedule of a training run (stored in the model's ``config.json``).

    Parameters
    ----------
    model : {'transformer', 'cnn_gru', 'detector_cnn'}, optional
        The network (see :data:`xstructure.learn.models.MODELS`).
    d : int, optional
        Token width (the GRU's state width for ``cnn_gru``). The defaults are the small Transformer, about
        1.2·10⁴ patterns/s on 2 CPU cores; one decoder layer reads about twice as fast.
    layers : int, optional
        Decoder layers.
    heads : int, optional
        Attention heads.
    tokens : int, optional
        Pattern tokens.
    hidden : int, optional
        Width of the MLPs.
    enc_layers : int, optional
        Self-attention layers over the pattern tokens.
    channels : int, optional
        ``detector_cnn``: channels of its first convolution.
    epochs : int, optional
        Most epochs.
    batch : int, optional
        Patterns per batch (one molecule per batch).
    lr : float, optional
        Peak learning rate (AdamW).
    weight_decay : float, optional
        AdamW weight decay.
    warmup : int, optional
        Steps of linear warm-up, then cosine decay to 0 over all epochs (or over ``max_minutes``).
    patience : int, optional
        Epochs without a better validation loss before stopping.
    w_pair : float, optional
        Weight of the pair-distance loss (Å², added to the aligned RMSD in Å).
    w_pattern : float, optional
        Weight of the pattern-consistency loss (simulates every prediction; 1D patterns only).
    noise : dict, optional
        The training noise, as :meth:`Noise.to_dict <xstructure.learn.data.Noise.to_dict>` gives it (default
        Gaussian 0.5 % per q point); drawn afresh every epoch.
    seed : int, optional
        Seed of the initial weights, the shuffling and the noise.
    threads : int, optional
        torch CPU threads (0: torch's default).
    max_minutes : float or None, optional
        Time budget; the learning-rate schedule follows whichever of steps and time runs out first.
    """
    model: str = "transformer"
    d: int = 64                     # defaults: the small Transformer (~1.2·10^4 patterns/s on 2 CPU cores;
    layers: int = 2                 # one layer reads about twice as fast)
    heads: int = 4
    tokens: int = 8
    hidden: int = 256
    enc_layers: int = 0
    channels: int = 8               # detector_cnn: channels of its first convolution
    epochs: int = 40
    batch: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: int = 200               # steps of linear warm-up, then cosine decay to 0 over all epochs
    patience: int = 8               # epochs without a better validation loss before stopping
    w_pair: float = 1.0             # weight of the pair-distance loss (Å² → added to the RMSD in Å)
    w_pattern: float = 0.0          # weight of the pattern-consistency loss (simulates every prediction)
    noise: dict = field(default_factory=lambda: Noise().to_dict())
    seed: int = 0
    threads: int = 0                # torch CPU threads (0: torch's default)
    max_minutes: float | None = None

    def hparams(self) -> dict:
        """The network's constructor options of this configuration (what :func:`~xstructure.learn.models.build_model`
        takes besides the kind and the input width).

        Returns
        -------
        dict
            Option name -> value.
        """
        if self.model == "cnn_gru":
            return {"d": self.d}
        hp = {"d": self.d, "layers": self.layers, "heads": self.heads, "tokens": self.tokens, "hidden": self.hidden,
              "enc_layers": self.enc_layers}
        return hp if self.model != "detector_cnn" else {**hp, "channels": self.channels}


def save_safetensors(tensors: dict, path: str, metadata: dict | None = None):
    from safetensors.torch import save_file  # optional dependency (safetensors)

    tmp = path + ".tmp"
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)
    os.replace(tmp, path)  # a crash mid-write never leaves a half-written checkpoint


def load_safetensors(path: str) -> dict:
    from safetensors import SafetensorError  # optional dependency (safetensors)
    from safetensors.torch import load_file  # optional dependency (safetensors)

    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"cannot read checkpoint {path}: {exc}") from None


def _distributed() -> tuple[int, int]:
    """(rank, world size); under torchrun (WORLD_SIZE > 1) the process group is initialised here (gloo on
    CPU, nccl when CUDA is in use)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch  # optional dependency (torch)
    import torch.distributed as dist  # optional dependency (torch)

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() and os.environ.get("XSTRUCTURE_DEVICE") == "cuda"
                                else "gloo")
    return dist.get_rank(), dist.get_world_size()


def _with_defaults(config):
    """A saved run's config with TrainConfig fields added since filled in by their defaults, so that a run
    made before a new (unused) field existed still resumes."""
    if not isinstance(config, dict) or not isinstance(config.get("train"), dict):
        return config
    return {**config, "train": {**asdict(TrainConfig()), **config["train"]}}


def write_json(obj, path: str):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


class _Molecule:
    """One molecule's tensors and data for training and prediction."""

    def __init__(self, name, numbers, reference, standardizer):
        import torch  # optional dependency (torch)

        self.name = name
        self.numbers_np = np.asarray(numbers, dtype=np.int64)
        self.reference_np = np.asarray(reference, dtype=np.float64)
        self.st = standardizer
        self.numbers = torch.as_tensor(self.numbers_np)
        self.reference = torch.as_tensor(self.reference_np, dtype=torch.float32)
        self.adj = torch.as_tensor(bond_graph(self.numbers_np, self.reference_np))
        self.heavy = heavy_mask(self.numbers_np)


class InversionModel:
    """A trained model: :meth:`load` a model directory, :meth:`predict` structures from raw patterns.

    Parameters
    ----------
    net : torch.nn.Module
        The trained network (put in evaluation mode).
    config : dict
        The model directory's ``config.json``.
    molecules : list
        The molecules the model knows, with their standardisations.

    Attributes
    ----------
    q : numpy.ndarray
        (Q,) the q grid the model reads, Å⁻¹.
    input_shape : tuple of int
        (Q,) for 1D patterns, (n_chi, Q) for detector images.
    config : dict
        The training configuration, q grid, probe, signal, noise and molecules.
    """

    def __init__(self, net, config: dict, molecules: list[_Molecule]):
        self.net = net.eval()
        self.config = config
        self.molecules = molecules
        self.q = np.asarray(config["q"], dtype=np.float64)
        self.image = config.get("image")
        self.input_shape = input_shape(len(self.q), self.image)
        self.signal = config.get("signal")   # the pattern signal the model was trained on ('total', 'sM', ...)

    @classmethod
    def load(cls, path) -> "InversionModel":
        """Load a model directory written by :func:`train`.

        Parameters
        ----------
        path : str or os.PathLike
            The directory (``config.json`` and ``model.safetensors``).

        Returns
        -------
        InversionModel
            The model, in evaluation mode.

        Raises
        ------
        ValueError
            Not a model directory, a corrupt or foreign config, another format version, or a checkpoint that does
            not match its config.
        """
        from .models import (
            build_model,  # torch is optional: loaded when a model or op is used
        )

        path = os.fspath(path)
        cfg_path = os.path.join(path, "config.json")
        if not os.path.isfile(cfg_path):
            raise ValueError(f"{path} is not a model directory (no config.json)")
        try:
            with open(cfg_path) as f:
                cfg = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"corrupt model config {cfg_path}: {exc}") from None
        if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
            raise ValueError(f"{cfg_path} is not an xstructure inversion model (format {cfg.get('format') if isinstance(cfg, dict) else None!r})")
        if cfg.get("version") != VERSION:
            raise ValueError(f"{cfg_path} has model format version {cfg.get('version')!r}; this xstructure reads {VERSION}")
        im = cfg.get("image")
        if im is not None and not (isinstance(im, dict) and isinstance(im.get("n_chi"), int) and im["n_chi"] > 0):
            raise ValueError(f"corrupt model config {cfg_path}: bad image description {im!r}")
        tensors = load_safetensors(os.path.join(path, "model.safetensors"))
        net = build_model(cfg["model"], int(np.prod(input_shape(len(cfg["q"]), im))), **cfg["hparams"])
        weights = {k[4:]: v for k, v in tensors.items() if k.startswith("net.")}
        try:
            net.load_state_dict(weights, strict=True)
        except RuntimeError as exc:
            raise ValueError(f"checkpoint {path} does not match its config: {str(exc).splitlines()[0]}") from None
        mols = []
        for i, m in enumerate(cfg["molecules"]):
            try:
                st = Standardizer(tensors[f"std.{i}.mean"].numpy(), tensors[f"std.{i}.std"].numpy())
            except KeyError:
                raise ValueError(f"checkpoint {path} lacks the standardisation of molecule {i}") from None
            mols.append(_Molecule(m["name"], m["numbers"], m["reference"], st))
        return cls(net, cfg, mols)

    def molecule(self, which=None) -> _Molecule:
        """One of the molecules the model knows.

        Parameters
        ----------
        which : str or None, optional
            Its name; may be left out when the model knows one molecule.

        Returns
        -------
        object
            The molecule's name, atomic numbers, reference geometry (Å) and standardisation.

        Raises
        ------
        ValueError
            An unknown name, or None for a model of several molecules.
        """
        if which is None:
            if len(self.molecules) != 1:
                raise ValueError(f"name the molecule: this model knows {[m.name for m in self.molecules]}")
            return self.molecules[0]
        for m in self.molecules:
            if m.name == which:
                return m
        raise ValueError(f"this model does not know molecule {which!r}; it knows {[m.name for m in self.molecules]}")

    def predict(self, patterns, molecule=None, *, batch: int = 512, numbers=None) -> np.ndarray:
        """Structures from raw patterns on the model's q grid.

        Parameters
        ----------
        patterns : array_like
            (B, Q) or (Q,) raw patterns, in the unit they were simulated in; a detector model takes (B, n_chi, Q) or
            (n_chi, Q) images (see :func:`xstructure.learn.detector.cake`).
        molecule : str or None, optional
            The molecule's name (needed when the model knows several).
        batch : int, optional
            Patterns per forward pass.
        numbers : array_like or None, optional
            (N,) atomic numbers to check against the molecule's.

        Returns
        -------
        numpy.ndarray
            (B, N, 3) or (N, 3) structures in Å, centred, in the reference's frame.

        Raises
        ------
        ValueError
            Patterns of the wrong shape, NaN or inf, or numbers that do not match the molecule.
        """
        import torch  # optional dependency (torch)

        m = self.molecule(molecule)
        if numbers is not None and not np.array_equal(np.asarray(numbers), m.numbers_np):
            raise ValueError(f"the model's {m.name} has {len(m.numbers_np)} atoms {m.numbers_np.tolist()}; got "
                             f"{np.asarray(numbers).tolist()}")
        I = np.asarray(patterns, dtype=np.float64)
        k = len(self.input_shape)
        if I.ndim not in (k, k + 1) or I.shape[I.ndim - k:] != self.input_shape:
            what = (f"patterns of shape (Q,) or (B, Q) with Q = {len(self.q)} q points" if k == 1 else
                    f"detector images of shape (n_chi, Q) or (B, n_chi, Q) with (n_chi, Q) = {self.input_shape}")
            raise ValueError(f"the model reads {what}, got shape {np.shape(patterns)}")
        single = I.ndim == k
        I = I.reshape(1 if single else len(I), -1)
        x = torch.from_numpy(np.ascontiguousarray(I))
        out = []
        with torch.inference_mode():  # standardised batch by batch: the batch stays in cache
            for s in range(0, len(x), batch):
                out.append(self.net(m.st.tensor(x[s:s + batch]), m.numbers, m.reference, m.adj).double().numpy())
        res = np.concatenate(out) if out else np.zeros((0, len(m.numbers_np), 3))
        return res[0] if single else res


def _lr(cfg: TrainConfig, step: int, total: int, elapsed_min: float = 0.0) -> float:
    """Linear warm-up, then cosine decay over the run: over all epochs' steps, or with ``max_minutes`` over
    whichever of steps and time runs out first (then a resumed run is no longer step-for-step identical)."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    p = min(1.0, (step - cfg.warmup) / max(1, total - cfg.warmup))
    if cfg.max_minutes:
        p = max(p, min(1.0, elapsed_min / cfg.max_minutes))
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * p))


def optimizer_tensors(opt) -> tuple[dict, dict]:
    import torch  # optional dependency (torch)

    sd = opt.state_dict()
    tensors = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            tensors[f"opt.{idx}.{k}"] = v if isinstance(v, torch.Tensor) else torch.tensor(v)
    return tensors, {"param_groups": sd["param_groups"]}


def load_optimizer(opt, tensors: dict, meta: dict):
    state: dict = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, idx, name = k.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def train(data, out_dir, config: TrainConfig | None = None, *, progress: bool = True, resume: bool = True,
          log=print) -> InversionModel:
    """Train a model on one pool or several (one network for all their molecules).

    Each epoch draws fresh noise (``config.noise``) for every training pattern and shuffles the batches; a batch
    holds one molecule. Loss: :func:`~xstructure.learn.losses.aligned_rmsd` + ``w_pair`` × pair-distance loss
    (+ ``w_pattern`` × pattern consistency). The validation loss (aligned RMSD on a fixed noisy draw of the
    validation split) picks the best epoch and stops training after ``patience`` epochs without improvement.
    Checkpoints are safetensors files; nothing is pickled.

    Parameters
    ----------
    data : PoolData or list of PoolData
        One pool's data, or several sharing one q grid, probe and signal (one pool per molecule).
    out_dir : str or os.PathLike
        The model directory (created).
    config : TrainConfig or None, optional
        Hyperparameters (default: :class:`TrainConfig`'s).
    progress : bool, optional
        Log each epoch.
    resume : bool, optional
        Continue an interrupted run in ``out_dir`` from its last finished epoch, exactly as it would have gone
        on.
    log : callable, optional
        Receives the progress lines.

    Returns
    -------
    InversionModel
        The best epoch's model, loaded from ``out_dir``.

    Raises
    ------
    ValueError
        No data, pools that do not share a q grid or kind of input, a model that does not fit the input, or a
        run directory made with another configuration.

    Examples
    --------
    >>> from xstructure.learn import TrainConfig, load_pool, train
    >>> data = load_pool("nmm.zarr")
    >>> model = train(data, "model/", TrainConfig(epochs=5))
    >>> structures = model.predict(data.patterns["test"])      # (n, N, 3), Å
    """
    import torch  # optional dependency (torch)

    from .losses import (  # torch is optional: loaded when a model or op is used
        aligned_rmsd,
        pair_distance_loss,
        pattern_loss,
    )
    from .models import (
        build_model,  # torch is optional: loaded when a model or op is used
    )

    cfg = config or TrainConfig()
    datas = [data] if isinstance(data, PoolData) else list(data)
    if not datas:
        raise ValueError("no training data")
    q = datas[0].q
    for d in datas[1:]:
        if not np.allclose(d.q, q, rtol=0, atol=1e-9) or (d.probe, d.signal) != (datas[0].probe, datas[0].signal):
            raise ValueError("all pools must share one q grid, probe and signal")
        if d.image != datas[0].image:
            raise ValueError("all pools must share one kind of input (the same detector images, or 1D patterns)")
    image = datas[0].image
    if (cfg.model == "detector_cnn") != (image is not None):
        raise ValueError("the detector_cnn model reads detector images (learn.detector.detector_data) and only it "
                         f"does; got model {cfg.model!r} with {'images' if image else '1D patterns'}")
    if image is not None and cfg.w_pattern:
        raise ValueError("the pattern-consistency loss (w_pattern) simulates 1D patterns; it is not for images")
    hparams = cfg.hparams() if image is None else {**cfg.hparams(), "image": list(datas[0].input_shape)}
    names = [d.molecule for d in datas]
    if len(set(names)) != len(names):
        raise ValueError(f"one pool per molecule, got {names}")
    noise = Noise(**cfg.noise)
    os.makedirs(out_dir, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    torch.manual_seed(cfg.seed)
    mols = [_Molecule(d.molecule, d.numbers, d.reference, Standardizer.fit(d.patterns["train"])) for d in datas]
    rank, world = _distributed()
    if rank != 0:  # one process writes and talks
        progress, log = False, (lambda *a, **k: None)
    net = build_model(cfg.model, int(np.prod(datas[0].input_shape)), **hparams)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    config_json = {"format": FORMAT, "version": VERSION, "model": cfg.model, "hparams": hparams,
                   "q": q.tolist(), "probe": datas[0].probe, "signal": datas[0].signal, "noise": noise.to_dict(),
                   "molecules": [{"name": m.name, "numbers": m.numbers_np.tolist(),
                                  "reference": m.reference_np.tolist()} for m in mols],
                   "train": asdict(cfg), "train_sizes": [len(d.patterns["train"]) for d in datas]}
    if image is not None:
        config_json["image"] = image
    state_path, last_path = os.path.join(out_dir, "state.json"), os.path.join(out_dir, "last.safetensors")
    state = {"epoch": 0, "step": 0, "best": float("inf"), "best_epoch": -1, "bad": 0, "history": []}
    if resume and os.path.exists(state_path) and os.path.exists(last_path):
        with open(state_path) as f:
            saved = json.load(f)
        if _with_defaults(saved.get("config")) != _with_defaults(config_json):
            raise ValueError(f"{out_dir} holds a run with other data or settings; use another directory "
                             "or resume=False")
        state = saved["state"]
        t = load_safetensors(last_path)
        net.load_state_dict({k[4:]: v for k, v in t.items() if k.startswith("net.")})
        load_optimizer(opt, t, saved["optimizer"])
        log(f"resuming at epoch {state['epoch']} (best val {state['best']:.4f} Å at epoch {state['best_epoch']})")
    if rank == 0:
        write_json(config_json, os.path.join(out_dir, "config.json"))
    if world > 1:
        import torch.distributed as dist  # optional dependency (torch)
        from torch.nn.parallel import (
            DistributedDataParallel,  # optional dependency (torch)
        )

        # every process draws the same noise and batches and takes its share of each batch; the losses are
        # weighted so that the averaged gradient is the full batch's (the same run as one process)
        step_net = DistributedDataParallel(net)
    else:
        step_net = net

    def std_tensors():
        out = {}
        for i, m in enumerate(mols):
            out[f"std.{i}.mean"] = torch.as_tensor(m.st.mean)
            out[f"std.{i}.std"] = torch.as_tensor(m.st.std)
        return out

    val = []
    for i, (d, m) in enumerate(zip(datas, mols)):
        if len(d.patterns["val"]):
            xv = m.st(noise.apply(d.patterns["val"], np.random.default_rng([cfg.seed, 10**6, i])))
            val.append((m, torch.as_tensor(xv), torch.as_tensor(d.targets["val"], dtype=torch.float32)))
    steps_per_epoch = sum(math.ceil(len(d.patterns["train"]) / cfg.batch) for d in datas)
    total = steps_per_epoch * cfg.epochs
    t_start = time.monotonic()
    base_min = state.get("minutes", 0.0)
    from tqdm.auto import tqdm  # loaded on use: keeps `import xstructure` fast

    while state["epoch"] < cfg.epochs and state["bad"] < cfg.patience:
        hist = state["history"]
        if cfg.max_minutes is not None and hist:  # a resumed run whose budget is spent trains no more
            last = hist[-1]["minutes"] - (hist[-2]["minutes"] if len(hist) > 1 else 0.0)
            if hist[-1]["minutes"] + last > cfg.max_minutes * 1.02:
                log(f"the budget of {cfg.max_minutes} minutes is spent ({hist[-1]['minutes']:.1f} min)")
                break
        ep = state["epoch"]
        net.train()
        batches = []
        for i, (d, m) in enumerate(zip(datas, mols)):
            rng = np.random.default_rng([cfg.seed, ep, i])
            x = torch.as_tensor(m.st(noise.apply(d.patterns["train"], rng)))
            y = torch.as_tensor(d.targets["train"], dtype=torch.float32)
            perm = torch.as_tensor(rng.permutation(len(x)))
            batches += [(m, x[perm[s:s + cfg.batch]], y[perm[s:s + cfg.batch]])
                        for s in range(0, len(x), cfg.batch)]
        order = np.random.default_rng([cfg.seed, ep, 999]).permutation(len(batches))
        run, n = 0.0, 0
        bar = tqdm(order, desc=f"epoch {ep + 1}/{cfg.epochs}", disable=not progress, leave=False)
        for b in bar:
            m, xb, yb = batches[b]
            if world > 1:
                if len(xb) < world:
                    continue  # too small to share (every process skips it alike)
                nb = len(xb)
                xb, yb = xb[rank::world], yb[rank::world]
                share = len(xb) * world / nb
            for g in opt.param_groups:
                g["lr"] = _lr(cfg, state["step"], total, state.get("minutes", 0.0))
            pred = step_net(xb, m.numbers, m.reference, m.adj)
            loss = aligned_rmsd(pred, yb)
            if cfg.w_pair:
                loss = loss + cfg.w_pair * pair_distance_loss(pred, yb)
            if cfg.w_pattern:
                loss = loss + cfg.w_pattern * pattern_loss(
                    pred, m.numbers_np, q, xb, torch.as_tensor(m.st.mean), torch.as_tensor(m.st.std),
                    probe=datas[0].probe, signal=datas[0].signal)
            opt.zero_grad(set_to_none=True)
            if world > 1:
                loss = loss * share
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            state["step"] += 1
            lval = loss.detach()
            if world > 1:
                dist.all_reduce(lval)
                lval = lval / world
            run, n = run + float(lval), n + 1
            bar.set_postfix(loss=f"{run / n:.4f}")
        bar.close()
        net.eval()
        with torch.inference_mode():
            vl = [float(aligned_rmsd(torch.cat([net(xv[s:s + 4096], m.numbers, m.reference, m.adj)
                                                for s in range(0, len(xv), 4096)]), yv)) for m, xv, yv in val]
        vloss = float(np.mean(vl)) if vl else run / max(n, 1)
        state["epoch"] = ep + 1
        minutes = base_min + (time.monotonic() - t_start) / 60
        if world > 1:  # every process takes rank 0's clock, so they stop (and schedule) alike
            tm = torch.tensor([minutes], dtype=torch.float64)
            dist.broadcast(tm, 0)
            minutes = float(tm)
        epoch_min = minutes - state.get("minutes", 0.0)
        state["minutes"] = minutes
        state["history"].append({"epoch": ep + 1, "train_loss": run / max(n, 1), "val_rmsd": vloss,
                                 "minutes": minutes})
        improved = vloss < state["best"] - 1e-6
        if improved:
            state.update(best=vloss, best_epoch=ep + 1, bad=0)
        else:
            state["bad"] += 1
        if rank == 0:
            if improved:
                save_safetensors({**{f"net.{k}": v for k, v in net.state_dict().items()}, **std_tensors()},
                                  os.path.join(out_dir, "model.safetensors"))
            ot, ometa = optimizer_tensors(opt)
            save_safetensors({**{f"net.{k}": v for k, v in net.state_dict().items()}, **ot}, last_path)
            write_json({"config": config_json, "state": state, "optimizer": ometa}, state_path)
        log(f"epoch {ep + 1}: train loss {run / max(n, 1):.4f}, val RMSD {vloss:.4f} Å"
                f"{' (best)' if state['best_epoch'] == ep + 1 else ''}")
        if cfg.max_minutes is not None and minutes + epoch_min > cfg.max_minutes * 1.02:
            log(f"stopping after {minutes:.1f} minutes: another epoch would pass the budget of {cfg.max_minutes}")
            break
    if world > 1:
        dist.barrier()  # the files are written before anyone reads them
    return InversionModel.load(out_dir)
