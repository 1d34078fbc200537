"""The ``xstructure`` command line.  The only module that imports everything.

    xstructure simulate FILE|NAME|SMILES --q 0.5:12:500 --probe xray --signal total --out p.csv --plot p.png
    xstructure integrate run_*.h5 --poni setup.poni --npt 1000 --out curves.h5 --plot curves.png
    xstructure crystal NaCl.cif --pxrd --wavelength CuKa1 --two-theta 5:90:8501 --plot pxrd.png --peaks peaks.csv
    xstructure crystal NaCl.cif --hkl-grid 8 --out grid.npz
    xstructure pool create NMM --method wigner --temperature 300 --n 100000 --chunk 4096 --out nmm.zarr
    xstructure pool simulate nmm.zarr --q 0.5:10:500 --probe xray --signal molecular [--scheduler tcp://...]
    xstructure pool info nmm.zarr --plot info.png
    xstructure info
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

SIGNAL_LABELS = {
    ("xray", "total"): "I_total(q) (electrons²)",
    ("xray", "atomic"): "I_at(q) (electrons²)",
    ("xray", "molecular"): "I_mol(q) (electrons²)",
    ("xray", "sM"): "sM(q) (Å⁻¹)",
    ("electron", "total"): "I_total(q) (Å²)",
    ("electron", "atomic"): "I_at(q) (Å²)",
    ("electron", "molecular"): "I_mol(q) (Å²)",
    ("electron", "sM"): "sM(q) (Å⁻¹)",
}


def parse_q(text: str) -> np.ndarray:
    """'START:STOP:N' (N points, both ends included) or a comma-separated list, in Å⁻¹."""
    try:
        if ":" in text:
            start, stop, n = text.split(":")
            n = int(n)
            if n < 1:
                raise ValueError
            return np.linspace(float(start), float(stop), n)
        return np.array([float(v) for v in text.split(",")])
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--q must be START:STOP:N (e.g. 0.5:12:500) or a comma-separated list, got {text!r}") from None


def _cmd_simulate(args) -> int:
    from .. import simulate
    from ..structures import molecule, _read_file
    import os

    if os.path.exists(args.structure):
        frames = _read_file(args.structure)
        names = [f"frame{k}" for k in range(len(frames))] if len(frames) > 1 else [args.structure]
    else:
        frames = [molecule(args.structure)]
        names = [args.structure]
    I = simulate(frames, args.q, probe=args.probe, signal=args.signal, energy_kev=args.energy_kev,
                 compton=args.compton, progress=len(frames) > 1000)
    I = np.atleast_2d(I)
    if args.out:
        header = "q_A^-1," + ",".join(f"{args.signal}_{n}".replace(",", "_") for n in names)
        np.savetxt(args.out, np.column_stack([args.q, I.T]), delimiter=",", header=header, comments="")
        print(f"wrote {I.shape[0]} pattern(s) x {len(args.q)} q points to {args.out}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.4, 4.2), constrained_layout=True)
        for k, row in enumerate(I[:20]):
            ax.plot(args.q, row, lw=1.2, label=names[k] if len(names) <= 5 else None)
        ax.set_xlabel("q (Å⁻¹)")
        ax.set_ylabel(SIGNAL_LABELS[(args.probe, args.signal)])
        probe = "X-ray" if args.probe == "xray" else "electron"
        ax.set_title(f"{probe} scattering, IAM: {args.structure}" + (" (first 20)" if len(I) > 20 else ""))
        if args.signal in ("sM", "molecular"):
            ax.axhline(0, color="0.6", lw=0.6)
        if len(names) <= 5:
            ax.legend(frameon=False)
        fig.savefig(args.plot, dpi=150)
        print(f"wrote plot {args.plot}")
    if not args.out and not args.plot:
        np.savetxt(sys.stdout, np.column_stack([args.q, I.T]), delimiter=",", fmt="%.8g")
    return 0


def parse_range(text: str) -> tuple:
    """'MIN:MAX' -> (min, max)."""
    try:
        lo, hi = (float(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN:MAX (e.g. 0.5:8), got {text!r}") from None
    if not lo < hi:
        raise argparse.ArgumentTypeError(f"expected MIN:MAX with MIN < MAX, got {text!r}")
    return lo, hi


_PIXELS_PER_CALL = 1 << 25  # frames are integrated in stacks of at most 32 frames and about this many pixels
_FRAMES_PER_CALL = 32


def _cmd_integrate(args) -> int:
    import os

    from tqdm import tqdm

    from ..detector.geometry import Geometry, _unit
    from ..detector.integrator import Integrator
    from ..detector.io import CurvesWriter, read_frames

    geometry = Geometry.from_poni(args.poni)  # a bad PONI raises ValueError: exit 2
    mask = None
    if args.mask:
        with read_frames(args.mask) as m:
            if len(m) != 1:
                raise ValueError(f"mask {args.mask} holds {len(m)} frames; expected one")
            mask = np.array(m[0])
    error_model = None if args.error_model == "none" else args.error_model
    options = dict(npt=args.npt, unit=args.unit, radial_range=args.radial_range, solid_angle=args.solid_angle,
                   polarization=args.polarization, error_model=error_model, saturation=args.saturation,
                   dummy=args.dummy)
    integrator = Integrator(geometry, mask=mask, **options)
    shape = geometry.shape
    per_call = max(1, min(_FRAMES_PER_CALL, _PIXELS_PER_CALL // (shape[0] * shape[1])))
    settings = {**options, "poni": os.path.abspath(args.poni), "mask": args.mask and os.path.abspath(args.mask),
                "dataset": args.dataset}
    tmp = args.out + ".partial"  # renamed to args.out at the end: a failed run leaves an older output intact
    writer = CurvesWriter(tmp, integrator.radial, integrator.unit, geometry, with_sigma=error_model is not None,
                          settings=settings)
    pending = []  # (frame, source, file number) not yet integrated
    failed = []  # files left out
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    bar = tqdm(total=len(args.images), unit="frame", disable=not progress, file=sys.stderr, dynamic_ncols=True)

    def flush():
        if not pending:
            return
        res = integrator.integrate(np.stack([p[0] for p in pending]))
        writer.append(res.intensity, res.sigma, res.count, [p[1] for p in pending])
        bar.update(len(pending))
        pending.clear()

    n_known = n_ok = 0  # frames in, and number of, the files read so far
    try:
        for i, path in enumerate(args.images):
            start = len(writer) + len(pending)  # this file's first row
            try:
                with read_frames(path, args.dataset) as ff:
                    if ff.frame_shape != shape:
                        raise ValueError(f"{path}: frames are {ff.frame_shape[0]} x {ff.frame_shape[1]} pixels, "
                                         f"the detector in {args.poni} {shape[0]} x {shape[1]}")
                    mean = (n_known + len(ff)) / (n_ok + 1)  # frames per good file so far: estimate the total
                    bar.total = n_known + len(ff) + round(mean * (len(args.images) - i - 1))
                    bar.refresh()
                    for k in range(len(ff)):
                        frame = ff[k]
                        if pending and frame.dtype != pending[-1][0].dtype:
                            flush()
                        pending.append((frame, ff.source(k), i))
                        if len(pending) >= per_call:
                            flush()
                    n_known, n_ok = n_known + len(ff), n_ok + 1
            except ValueError as exc:  # this file is left out: its frames, integrated or not, are taken back
                failed.append(path)
                rest = len(args.images) - i - 1
                bar.total = max(bar.n, n_known + (round(n_known / n_ok * rest) if n_ok else rest))
                tqdm.write(f"xstructure: error: {exc}", file=sys.stderr)
                pending[:] = [p for p in pending if p[2] != i]
                if len(writer) > start:
                    bar.update(start - len(writer))
                    writer.truncate(start)
        flush()
        bar.total = bar.n
    finally:  # an exception (Ctrl-C) leaves the .partial file behind
        bar.close()
        writer.close()
    n = len(writer)
    if n:
        os.replace(tmp, args.out)
    else:
        os.remove(tmp)

    nfiles = len(args.images)
    if n == 0:
        print(f"xstructure: error: no frame could be integrated: {len(failed)} of {nfiles} file(s) failed",
              file=sys.stderr)
        return 2
    summary = (f"integrated {n} frame(s) from {nfiles - len(failed)} file(s) into {args.out} "
               f"({integrator.npt} points, {integrator.unit})")
    if failed:
        summary += f"; {len(failed)} of {nfiles} file(s) failed (see the errors above)"
    print(summary)
    if args.plot:
        _plot_curves(args.out, args.plot, _unit(integrator.unit).label, args.logy)
        print(f"wrote plot {args.plot}")
    return 1 if failed else 0


def _plot_curves(h5path, png, xlabel, logy, most=20):
    """PNG of the profiles in an integrate output: all of them when at most ``most``, else their mean and
    a few evenly spaced ones.  Empty bins are not drawn."""
    import h5py
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with h5py.File(h5path, "r") as f:
        radial = f["radial"][:]
        I, count, src = f["intensity"], f["count"], f["source"]
        F = I.shape[0]
        total, hits = np.zeros_like(radial), np.zeros_like(radial)
        for a in range(0, F, 1024):  # the mean, without loading every profile at once
            good = count[a:a + 1024] > 0
            total += np.where(good, I[a:a + 1024], 0.0).sum(axis=0)
            hits += good.sum(axis=0)
        picks = np.arange(F) if F <= most else np.unique(np.linspace(0, F - 1, 8).round().astype(int))
        curves = [(np.where(count[k] > 0, I[k], np.nan), src[k].decode() if isinstance(src[k], bytes) else src[k])
                  for k in picks]
    fig, ax = plt.subplots(figsize=(6.4, 4.2), constrained_layout=True)
    for y, name in curves:
        ax.plot(radial, y, lw=0.8 if F > most else 1.2, alpha=0.6 if F > most else 1.0, label=name if F <= 5 else None)
    if F > most:
        mean = np.divide(total, hits, out=np.full_like(total, np.nan), where=hits > 0)
        ax.plot(radial, mean, color="k", lw=2.0, label=f"mean of {F} frames")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("intensity (a.u.)")
    if logy:
        ax.set_yscale("log")
    ax.set_title(f"{F} frame(s)" + (f": {len(curves)} shown, and the mean" if F > most else ""))
    if F <= 5 or F > most:
        ax.legend(frameon=False, fontsize="small")
    fig.savefig(png, dpi=150)
    plt.close(fig)


def parse_two_theta(text: str) -> np.ndarray:
    """'START:STOP:N' in degrees 2θ (N points, both ends included)."""
    try:
        start, stop, n = text.split(":")
        start, stop, n = float(start), float(stop), int(n)
        if n < 2 or not 0 <= start < stop <= 180:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--two-theta must be START:STOP:N with 0 <= START < STOP <= 180 and N >= 2 (e.g. 5:90:8501), "
            f"got {text!r}") from None
    return np.linspace(start, stop, n)


def _cmd_crystal(args) -> int:
    from ..crystal import as_cell, structure_factors
    from ..crystal.powder import powder_pattern, powder_peaks

    cell = as_cell(args.structure)  # missing file, no cell, zero volume: ValueError, exit 2
    if args.hkl_grid is not None and not args.out:
        raise ValueError("--hkl-grid needs --out FILE.npz")
    if args.out and args.hkl_grid is None:
        raise ValueError("--out is the --hkl-grid output; give --hkl-grid H too")
    if args.hkl_grid is not None and not 0 <= args.hkl_grid <= 100:
        raise ValueError(f"--hkl-grid H must be in 0..100 (a (2H+1)³ grid), got {args.hkl_grid}")
    lengths = np.linalg.norm(cell.cell, axis=1)
    a, b, c = cell.cell

    def angle(u, v):
        return np.degrees(np.arccos(np.clip(u @ v / np.linalg.norm(u) / np.linalg.norm(v), -1, 1)))

    symbols, counts = np.unique(cell.symbols, return_counts=True)
    formula = "".join(f"{s}{n if n > 1 else ''}" for s, n in zip(symbols, counts))
    wavelength = args.wavelength
    try:
        wavelength = float(wavelength)
    except ValueError:
        pass
    tth = args.two_theta
    pxrd = args.pxrd or args.plot or args.peaks
    if pxrd:  # a bad wavelength fails here, before anything is printed
        peaks = powder_peaks(cell, wavelength, (tth[0], tth[-1]), factors=args.factors, doublet=args.doublet)
    print(f"{args.structure}: {formula}, {len(cell.symbols)} atoms; a b c = {lengths[0]:.4f} {lengths[1]:.4f} "
          f"{lengths[2]:.4f} Å, α β γ = {angle(b, c):.3f} {angle(a, c):.3f} {angle(a, b):.3f}°, "
          f"V = {cell.volume:.3f} Å³")
    if pxrd:
        lam = ", ".join(f"{v:.5f}" for v in np.unique(peaks.wavelength)) or str(wavelength)
        print(f"{len(peaks)} peaks in 2θ = {tth[0]:g}..{tth[-1]:g}° at λ = {lam} Å ({args.wavelength}), "
              f"factors {args.factors}; the {min(args.top, len(peaks))} strongest:")
        top = np.sort(np.argsort(-peaks.intensity, kind="stable")[:args.top])
        print(f"{'2θ (°)':>10} {'d (Å)':>9} {'h':>4} {'k':>3} {'l':>3} {'mult':>5} {'I (rel.)':>9}")
        for i in top:
            h, k, l = peaks.hkl[i]
            print(f"{peaks.two_theta[i]:10.4f} {peaks.d[i]:9.5f} {h:4d} {k:3d} {l:3d} {peaks.multiplicity[i]:5d} "
                  f"{peaks.intensity[i]:9.2f}")
        if args.peaks:
            table = np.column_stack([peaks.two_theta, peaks.d, peaks.hkl, peaks.multiplicity, peaks.intensity,
                                     peaks.wavelength])
            np.savetxt(args.peaks, table, delimiter=",", fmt=["%.6f", "%.6f", "%d", "%d", "%d", "%d", "%.6g", "%.6f"],
                       header="two_theta_deg,d_A,h,k,l,multiplicity,intensity,wavelength_A", comments="")
            print(f"wrote {len(peaks)} peaks to {args.peaks}")
        if args.plot:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            x, y = powder_pattern(cell, tth, wavelength, factors=args.factors, doublet=args.doublet)
            scale = 100.0 / y.max() if y.max() > 0 else 1.0
            fig, ax = plt.subplots(figsize=(6.4, 4.2), constrained_layout=True)
            ax.vlines(peaks.two_theta, 0, peaks.intensity, color="C3", lw=0.8, alpha=0.7, zorder=1, label="peaks")
            ax.plot(x, y * scale, lw=1.0, color="C0", zorder=2, label="pattern (pseudo-Voigt, FWHM 0.1°)")
            for i in top:
                ax.annotate("".join(str(v) for v in peaks.hkl[i]) if np.all(np.abs(peaks.hkl[i]) < 10)
                            else " ".join(str(v) for v in peaks.hkl[i]),
                            (peaks.two_theta[i], peaks.intensity[i]), fontsize=7, ha="center", va="bottom")
            ax.set_xlabel("2θ (°)")
            ax.set_ylabel("intensity (rel.)")
            ax.set_xlim(tth[0], tth[-1])
            ax.set_ylim(0, 110)
            ax.set_title(f"powder pattern of {formula}, λ = {lam} Å")
            ax.legend(frameon=False, fontsize="small")
            fig.savefig(args.plot, dpi=150)
            plt.close(fig)
            print(f"wrote plot {args.plot}")
    if args.hkl_grid is not None:
        H = args.hkl_grid
        F = structure_factors(cell, H, grid=True, factors=args.factors)
        np.savez(args.out, hkl_grid=F, H=H, cell=cell.cell, intensity=np.abs(F) ** 2)
        print(f"wrote F(hkl) on h, k, l in [-{H}, {H}] ({2 * H + 1}³, index [h+H, k+H, l+H]) to {args.out}")
    return 0


def _cmd_info(args) -> int:
    from .. import __version__, build_info

    print(json.dumps({"version": __version__, **build_info()}, indent=2))
    return 0


def parse_param(text: str) -> tuple:
    """'KEY=VALUE' with VALUE read as JSON when it parses (numbers, true, lists), else as a string."""
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"--param must be KEY=VALUE (e.g. steps=2000), got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def _cmd_pool_create(args) -> int:
    from ..pools.pool import Pool

    params = dict(args.param or [])
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    try:
        pool = Pool.create(args.out, args.molecule, args.method, n=args.n, temperature=args.temperature,
                           seed=args.seed, chunk=args.chunk, progress=progress, scheduler=args.scheduler, **params)
    except KeyboardInterrupt:
        print(f"xstructure: interrupted; the finished chunks are kept in {args.out}: run the same command "
              "again to finish", file=sys.stderr)
        return 130
    print(f"pool {pool.path}: {len(pool)} geometries of {pool.attrs['molecule']['name']} "
          f"({pool.attrs['method']}, {pool.attrs['temperature']:g} K, seed {pool.attrs['seed']})")
    return 0


def _cmd_pool_simulate(args) -> int:
    from ..pools.pool import Pool

    pool = Pool.open(args.pool)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    try:
        name = pool.simulate(args.q, probe=args.probe, signal=args.signal, name=args.name,
                             energy_kev=args.energy_kev, progress=progress, scheduler=args.scheduler)
    except KeyboardInterrupt:
        print(f"xstructure: interrupted; the finished chunks are kept in {args.pool}: run the same command "
              "again to finish", file=sys.stderr)
        return 130
    print(f"pattern set {name!r} in {pool.path}: {len(pool)} x {len(args.q)} ({args.probe}, {args.signal})")
    return 0


def _cmd_pool_info(args) -> int:
    from ..pools.pool import Pool

    pool = Pool.open(args.pool)
    print(json.dumps(pool.info(), indent=2, ensure_ascii=False))
    if args.plot:
        pool.summary_plot(args.plot)
        print(f"wrote plot {args.plot}")
    return 0


def parse_noise(text: str):
    """'gaussian:0.005' (relative σ per q point), 'poisson:1e6' (counts per pattern) or 'none'."""
    from ..learn.data import Noise

    kind, _, value = text.partition(":")
    try:
        if kind == "none" and not value:
            return Noise("none")
        if kind == "gaussian":
            return Noise("gaussian", level=float(value))
        if kind == "poisson":
            return Noise("poisson", counts=float(value))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    raise argparse.ArgumentTypeError(f"--noise must be gaussian:LEVEL, poisson:COUNTS or none, got {text!r}")


CRYSTAL_MODELS = ["mlp", "mlp_mse", "unet", "coord"]


def _is_crystal_set(path: str) -> bool:
    from ..learn.crystals import CrystalSet

    try:
        CrystalSet.open(path)
    except ValueError:
        return False
    return True


def _task(args, path: str) -> str:
    task = args.task if args.task != "auto" else ("crystal" if _is_crystal_set(path) else "molecule")
    crystal_model = getattr(args, "model", None) in CRYSTAL_MODELS
    if hasattr(args, "model") and args.model is not None and (task == "crystal") != crystal_model:
        raise ValueError(f"model {args.model!r} is not for the {task} task: use "
                         f"{CRYSTAL_MODELS if task == 'crystal' else ['transformer', 'cnn_gru']}")
    return task


def _cmd_train_crystal(args) -> int:
    from ..learn.phase_train import PhaseConfig, train_phase

    if len(args.pools) != 1:
        raise ValueError("the crystal task trains on one crystal set")
    cfg = PhaseConfig(model=args.model, epochs=args.epochs, batch=args.batch or 32, lr=args.lr,
                      seed=args.seed, max_minutes=args.max_minutes, patience=args.patience, w_phys=args.w_phys)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    try:
        train_phase(args.pools[0], args.out, cfg, progress=progress, resume=not args.restart, limit=args.limit,
                    n_test=args.n_test, n_val=args.n_val)
    except KeyboardInterrupt:
        print(f"xstructure: interrupted; finished epochs are kept in {args.out}: run the same command again to "
              "continue", file=sys.stderr)
        return 130
    print(f"model {args.out}: {args.model} for {args.pools[0]}")
    return 0


def _cmd_train(args) -> int:
    from ..learn import TrainConfig, load_pool, train

    task = _task(args, args.pools[0])
    if args.model is None:
        args.model = "mlp" if task == "crystal" else "transformer"
    if task == "crystal":
        return _cmd_train_crystal(args)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    datas = [load_pool(p, args.pattern_set, seed=args.seed, limit=args.limit) for p in args.pools]
    if args.model == "detector_cnn":
        from ..learn.detector import detector_data

        datas = [detector_data(d, args.chi_bins, energy_kev=args.energy, p2=args.p2, progress=progress) for d in datas]
    cfg = TrainConfig(model=args.model, d=args.width, layers=args.layers, epochs=args.epochs, batch=args.batch or 256,
                      lr=args.lr, noise=args.noise.to_dict(), seed=args.seed, max_minutes=args.max_minutes,
                      patience=args.patience)
    try:
        model = train(datas if len(datas) > 1 else datas[0], args.out, cfg, progress=progress,
                      resume=not args.restart)
    except KeyboardInterrupt:
        print(f"xstructure: interrupted; finished epochs are kept in {args.out}: run the same command again to "
              "continue", file=sys.stderr)
        return 130
    print(f"model {args.out}: {args.model} for {[m.name for m in model.molecules]}")
    return 0


def _is_phase_model(path: str) -> bool:
    from ..learn.phase_train import FORMAT

    try:
        with open(os.path.join(path, "config.json")) as f:
            return json.load(f).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _cmd_evaluate_crystal(args) -> int:
    from ..learn.evaluate import strip_private
    from ..learn.phase_train import PhaseModel, evaluate_phase, format_phase_table, phase_plot

    model = PhaseModel.load(args.model)
    c = model.config
    rep = evaluate_phase(args.pool, {c["config"]["model"]: model}, split_seed=c["split_seed"], n_test=c["n_test"],
                         n_val=c["n_val"], limit=args.n_test, flip=None if args.flip else {})
    print(format_phase_table(rep))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(strip_private(rep), f, indent=1)
        print(f"wrote {args.json}")
    if args.plot:
        phase_plot(rep, args.plot)
        print(f"wrote plot {args.plot}")
    return 0


def _cmd_evaluate(args) -> int:
    from ..learn import InversionModel, evaluate, format_table, load_pool
    from ..learn.evaluate import report_plot, strip_private

    if _is_phase_model(args.model):
        return _cmd_evaluate_crystal(args)
    model = InversionModel.load(args.model)
    data = load_pool(args.pool, args.pattern_set, seed=args.seed)
    if len(data.q) != len(model.q) or not np.allclose(data.q, model.q, rtol=0, atol=1e-9):
        raise ValueError(f"the pool's q grid ({len(data.q)} points) is not the model's ({len(model.q)} points)")
    if model.image is not None:
        from ..learn.detector import with_images

        data = with_images(data, model.image, progress=sys.stderr.isatty())
    rep = evaluate(data, args.noise, models={model.config["model"]: model}, n_test=args.n_test,
                   refine_steps=args.refine_steps)
    print(format_table(rep))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(strip_private(rep), f, indent=1)
        print(f"wrote {args.json}")
    if args.plot:
        report_plot(rep, data, args.plot)
        print(f"wrote plot {args.plot}")
    return 0


def _read_patterns(path: str):
    """(B, Q) patterns and their q grid (or None) from .npy, .csv or .h5."""
    ext = os.path.splitext(path)[1].lower()
    if not os.path.isfile(path):
        raise ValueError(f"pattern file not found: {path}")
    try:
        if ext == ".npy":
            arr = np.load(path, allow_pickle=False)
            return np.atleast_2d(arr), None
        if ext == ".csv":
            arr = np.loadtxt(path, delimiter=",", comments="#", ndmin=2)
            if arr.shape[1] == 2:  # q, I columns (as `xstructure simulate --out` writes them)
                return arr[:, 1][None], arr[:, 0]
            return arr.T if arr.shape[1] == 1 else arr, None
        if ext in (".h5", ".hdf5"):
            import h5py

            with h5py.File(path, "r") as f:
                key = next((k for k in ("I", "intensity", "patterns") if k in f), None)
                if key is None:
                    raise ValueError(f"{path} has no dataset named I, intensity or patterns")
                q = f["q"][()] if "q" in f else None
                return np.atleast_2d(f[key][()]), q
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read patterns from {path}: {exc}") from None
    raise ValueError(f"unknown pattern file type {ext!r}: use .npy, .csv or .h5")


def _composition(formula: str) -> np.ndarray:
    from ase.formula import Formula

    from ..factors import atomic_number

    try:
        counts = Formula(formula).count()
    except ValueError as exc:
        raise ValueError(f"cannot read the formula {formula!r}: {exc}") from None
    comp = np.zeros(119, dtype=np.float32)
    total = sum(counts.values())
    for sym, k in counts.items():
        comp[atomic_number(sym)] = k / total
    return comp


def _cmd_predict_crystal(args) -> int:
    from ..learn.phase_train import PhaseModel

    model = PhaseModel.load(args.model)
    if not args.pattern.endswith(".npy") or not os.path.isfile(args.pattern):
        raise ValueError(f"crystal input must be an existing .npy file, got {args.pattern}")
    x = np.load(args.pattern, allow_pickle=False)
    if model.cfg.model == "coord":
        if not args.formula:
            raise ValueError("the coord model needs the composition: --formula (e.g. NaCl)")
        x = np.atleast_2d(x)
        rho = model.predict(powder=x, composition=np.repeat(_composition(args.formula)[None], len(x), 0))
    else:
        rho = model.predict(intensity=x)
    if not args.out.endswith(".npy"):
        raise ValueError("--out for a crystal model must be a .npy file (densities, fractional frame)")
    if args.cif:
        rho = _solve_crystal(model, x, rho, args)
    np.save(args.out, rho if len(rho) > 1 else rho[0])
    print(f"wrote {len(rho)} density grid(s) {rho.shape[1:]} to {args.out}")
    return 0


def _solve_crystal(model, intensity, rho, args) -> np.ndarray:
    """--cif: atoms from the |F|² boxes (one cell and formula for all), the model's densities starting the
    charge flipping (phase.solve_atoms); writes the refined atoms and returns their densities."""
    import ase
    import ase.io
    from ase.geometry import cellpar_to_cell

    from ..learn import phase

    if model.cfg.model == "coord" or not args.cell or not args.formula:
        raise ValueError("--cif needs a model on |F|² boxes (mlp, mlp_mse, unet), --cell and --formula")
    try:
        par = [float(v) for v in args.cell.split(",")]
        cell = cellpar_to_cell(par) if len(par) == 6 else None
    except ValueError:
        cell = None
    if cell is None or not np.isfinite(np.linalg.det(cell)) or np.linalg.det(cell) <= 0:
        raise ValueError(f"--cell must be a,b,c,alpha,beta,gamma (Å, degrees) of a real cell, got {args.cell!r}")
    I = np.asarray(intensity, dtype=np.float64).reshape((-1,) + intensity.shape[-3:])
    H = I.shape[-1] // 2
    comp = _composition(args.formula)
    contents = [phase.cell_contents(comp, np.sqrt(i[H, H, H])) for i in I]
    A = np.sqrt(I / I[:, H, H, H].reshape(-1, 1, 1, 1))
    sol = phase.solve_atoms(A, [cell] * len(I), contents, 8 * np.pi ** 2 * float(model.config["sigma"]) ** 2,
                            start=rho, n=rho.shape[-1])
    frames = [ase.Atoms(numbers=z, scaled_positions=f, cell=cell, pbc=True)
              for f, z in zip(sol["frac"], sol["numbers"])]
    ase.io.write(args.cif, frames if len(frames) > 1 else frames[0], format="cif")
    print(f"wrote {len(frames)} refined atom model(s) to {args.cif} (R = "
          f"{', '.join(f'{r:.3f}' for r in sol['r'])}; below 0.02 counts as solved)")
    return sol["density"]


def _cmd_predict(args) -> int:
    import ase
    import ase.io

    from ..learn import InversionModel

    if _is_phase_model(args.model):
        return _cmd_predict_crystal(args)
    model = InversionModel.load(args.model)
    I, q = _read_patterns(args.pattern)
    if q is not None and (len(q) != len(model.q) or not np.allclose(q, model.q, rtol=0, atol=1e-6)):
        raise ValueError(f"the pattern's q grid ({len(q)} points, {q[0]:g}..{q[-1]:g} Å⁻¹) is not the model's "
                         f"({len(model.q)} points, {model.q[0]:g}..{model.q[-1]:g} Å⁻¹)")
    mol = model.molecule(args.molecule)
    pos = model.predict(I, mol.name).reshape(-1, len(mol.numbers_np), 3)
    frames = [ase.Atoms(numbers=mol.numbers_np, positions=p) for p in pos]
    ase.io.write(args.out, frames if len(frames) > 1 else frames[0])
    print(f"wrote {len(frames)} structure(s) of {mol.name} to {args.out}")
    return 0


def _add_learn_parsers(sub):
    t = sub.add_parser("train", help="train an inversion model (pattern -> structure) on pools",
                       description="Train a model on one pool, or one model on several pools of different "
                                   "molecules.  Checkpoints (safetensors + JSON) go to --out after every epoch; "
                                   "running the same command again resumes.")
    t.add_argument("pools", nargs="+", metavar="POOL")
    t.add_argument("--model", default=None, choices=["transformer", "cnn_gru", "detector_cnn"] + CRYSTAL_MODELS,
                   help="molecules: transformer (default), cnn_gru, detector_cnn (2D images of aligned molecules, "
                        "made from the pool's geometries); crystals: mlp (default), mlp_mse, unet, coord")
    t.add_argument("--chi-bins", type=int, default=8, help="detector_cnn: azimuth bins of the images")
    t.add_argument("--energy", type=float, default=20.0, help="detector_cnn: X-ray photon energy (keV)")
    t.add_argument("--p2", type=float, default=0.4,
                   help="detector_cnn: alignment <P2> of the molecule's long axis along x")
    t.add_argument("--task", default="auto", choices=["auto", "molecule", "crystal"],
                   help="auto: crystal for a crystal set (xstructure crystals create), else molecule")
    t.add_argument("--w-phys", type=float, default=0.0, help="crystals: weight of the |F| consistency loss")
    t.add_argument("--n-test", type=int, default=500, help="crystals: held-out test crystals")
    t.add_argument("--n-val", type=int, default=200, help="crystals: validation crystals")
    t.add_argument("--out", required=True, help="model directory")
    t.add_argument("--pattern-set", help="pattern set of the pools (default: their only one)")
    t.add_argument("--epochs", type=int, default=40)
    t.add_argument("--batch", type=int, help="batch size (default 256 for molecules, 32 for crystals)")
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--width", type=int, default=64, help="model width (token dimension)")
    t.add_argument("--layers", type=int, default=2)
    t.add_argument("--patience", type=int, default=8)
    t.add_argument("--noise", type=parse_noise, default="gaussian:0.005",
                   help="training noise: gaussian:LEVEL (relative per q point, per image pixel for detector_cnn), "
                        "poisson:COUNTS or none")
    t.add_argument("--limit", type=int, help="use only this many members of each pool")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--max-minutes", type=float)
    t.add_argument("--restart", action="store_true", help="start over instead of resuming")
    t.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    t.set_defaults(func=_cmd_train)
    e = sub.add_parser("evaluate", help="score a model and the baselines on a pool's test split",
                       description="Median/mean heavy-atom RMSD, all-atom RMSD and accuracy at 0.05/0.1/0.2 Å of "
                                   "the model, the mean structure, pool fitting and ridge regression, and the best "
                                   "of them refined, on one noisy draw of the test patterns.")
    e.add_argument("model")
    e.add_argument("pool")
    e.add_argument("--pattern-set")
    e.add_argument("--noise", type=parse_noise, default="gaussian:0.005")
    e.add_argument("--n-test", type=int)
    e.add_argument("--refine-steps", type=int, default=40)
    e.add_argument("--seed", type=int, default=0, help="split seed (the model's training seed)")
    e.add_argument("--json", help="write the report here")
    e.add_argument("--plot", help="write a figure here (PNG)")
    e.add_argument("--flip", action=argparse.BooleanOptionalAction, default=True,
                   help="crystals: also score charge flipping and atom models refined from it (default on)")
    e.set_defaults(func=_cmd_evaluate)
    r = sub.add_parser("predict", help="structures from patterns with a trained model")
    r.add_argument("model")
    r.add_argument("pattern", help=".npy (Q,) or (B, Q); .csv (q,I columns or one I column); .h5 (I and q); for a "
                                   "detector_cnn model .npy or .h5 images (n_chi, Q) or (B, n_chi, Q) "
                                   "(xstructure.learn.detector.cake bins a detector frame)")
    r.add_argument("--molecule", help="which of the model's molecules (default: its only one)")
    r.add_argument("--formula", help="crystals (coord model, --cif): the composition, e.g. NaCl or Al2O3")
    r.add_argument("--cell", help="crystals (--cif): the cell as a,b,c,alpha,beta,gamma (Å, degrees)")
    r.add_argument("--cif", help="crystals: also solve for atoms (charge flipping from the model's phases, atoms "
                                 "refined against the |F|² box) and write them here; --out gets their densities. "
                                 "The atom count comes from F(000) = sqrt(|F(000)|²), so the box must be on the "
                                 "absolute scale (electrons², atoms of Z electrons and the model's B)")
    r.add_argument("--out", required=True, help="structure file (any format ase writes: .xyz, .pdb, ...); for a "
                                                "crystal model a .npy of densities")
    r.set_defaults(func=_cmd_predict)


def _add_pool_parser(sub):
    pool = sub.add_parser(
        "pool", help="pools of sampled geometries and their patterns in a resumable zarr store",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Sample geometries of a molecule into a zarr v3 store, compute pattern sets of them, and "
                    "summarise a store.  Work is done chunk by chunk: an interrupted command finishes when run "
                    "again with the same arguments.  See docs/pool.md.",
        epilog="""\
exit status: 0 done; 2 a bad option, an unknown molecule or SMILES, a store that is not an xstructure pool
  (or is corrupted), or a store made with other arguments (nothing in it is changed); 130 interrupted.
examples:
  xstructure pool create NMM --method wigner --temperature 300 --n 100000 --chunk 4096 --out nmm.zarr
  xstructure pool simulate nmm.zarr --q 0.5:10:500 --probe xray --signal molecular
  xstructure pool simulate nmm.zarr --q 0.5:10:500 --scheduler tcp://10.0.0.5:8786
  xstructure pool info nmm.zarr --plot info.png""")
    ps = pool.add_subparsers(dest="pool_command", required=True)
    c = ps.add_parser("create", help="sample geometries into a new store (or finish an interrupted one)")
    c.add_argument("molecule", help="a name (NMM, CHD, DT, any ase.build molecule), a SMILES string or a file")
    c.add_argument("--method", default="wigner", help="sampling method: wigner, md or mc (default wigner)")
    c.add_argument("--temperature", type=float, default=300.0, help="temperature in K (default 300)")
    c.add_argument("--n", type=int, required=True, help="number of geometries")
    c.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    c.add_argument("--chunk", type=int, default=4096, help="geometries per chunk, the unit of work (default 4096)")
    c.add_argument("--param", type=parse_param, action="append", metavar="KEY=VALUE",
                   help="further option of the sampling method (repeatable; VALUE read as JSON when it parses)")
    c.add_argument("--out", required=True, help="the store (a directory, e.g. nmm.zarr)")
    c.add_argument("--scheduler", help="dask.distributed scheduler address (tcp://host:8786); workers need "
                                       "the store on a shared file system")
    c.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")
    c.set_defaults(func=_cmd_pool_create)
    s = ps.add_parser("simulate", help="compute a pattern set of every geometry in a store")
    s.add_argument("pool", help="the store")
    s.add_argument("--q", type=parse_q, default=parse_q("0.5:10:500"),
                   help="q grid in Å⁻¹: START:STOP:N or a comma-separated list (default 0.5:10:500)")
    s.add_argument("--probe", choices=["xray", "electron"], default="xray")
    s.add_argument("--signal", choices=["total", "atomic", "molecular", "sM"], default="molecular")
    s.add_argument("--energy-kev", type=float, default=None, help="electron kinetic energy (keV)")
    s.add_argument("--name", help="name of the pattern set (default PROBE_SIGNAL)")
    s.add_argument("--scheduler", help="dask.distributed scheduler address (tcp://host:8786)")
    s.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")
    s.set_defaults(func=_cmd_pool_simulate)
    i = ps.add_parser("info", help="size, molecule, sampling and pattern sets of a store (JSON)")
    i.add_argument("pool", help="the store")
    i.add_argument("--plot", help="PNG: bond lengths by type, RMSD to the reference, mean pattern ± std")
    i.set_defaults(func=_cmd_pool_info)


def _cmd_crystals_create(args) -> int:
    from ..learn.crystals import CrystalSet

    progress = sys.stderr.isatty() if args.progress is None else args.progress
    try:
        cs = CrystalSet.create(args.out, args.n, system=args.system, seed=args.seed, chunk=args.chunk,
                               max_atoms=args.max_atoms, hmax=args.hmax, sigma=args.sigma, progress=progress)
    except KeyboardInterrupt:
        print(f"xstructure: interrupted; finished chunks are kept in {args.out}: run the same command again to "
              "continue", file=sys.stderr)
        return 130
    print(cs)
    return 0


def _cmd_crystals_info(args) -> int:
    from ..learn.crystals import CrystalSet

    cs = CrystalSet.open(args.set)
    info = {k: v for k, v in cs.attrs.items()}
    info["complete"] = cs.complete
    print(json.dumps(info, indent=1))
    return 0


def _add_crystals_parser(sub):
    cr = sub.add_parser("crystals", help="sets of random crystals with |F|² boxes and powder patterns (zarr)",
                        description="Random symmetric crystals (cubic, trigonal or any space group), their |F(hkl)|² "
                                    "on a box and powder patterns, for `xstructure train --task crystal`.  An "
                                    "interrupted create finishes when run again with the same arguments.")
    cs = cr.add_subparsers(dest="crystals_command", required=True)
    c = cs.add_parser("create", help="generate a crystal set (or finish an interrupted one)")
    c.add_argument("--system", default="cubic", choices=["cubic", "trigonal", "any"])
    c.add_argument("--n", type=int, required=True, help="number of crystals")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--chunk", type=int, default=250)
    c.add_argument("--max-atoms", type=int, default=24, help="atoms in the conventional cell at most")
    c.add_argument("--hmax", type=int, default=8, help="|F|² box h, k, l in [-H, H]")
    c.add_argument("--sigma", type=float, default=0.5, help="Gaussian atom width of the target densities (Å)")
    c.add_argument("--out", required=True, help="the store (a directory, e.g. cubic.zarr)")
    c.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    c.set_defaults(func=_cmd_crystals_create)
    i = cs.add_parser("info", help="parameters of a crystal set (JSON)")
    i.add_argument("set")
    i.set_defaults(func=_cmd_crystals_info)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xstructure",
                                description="X-ray and electron scattering of molecules and crystals.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("simulate", help="scattering pattern of a molecule (IAM, Debye formula)")
    s.add_argument("structure", help="structure file (xyz, extxyz, cif, pdb, ...), a name (NMM, CHD, DT, or any "
                                     "ase.build molecule such as H2O, C6H6), or a SMILES string")
    s.add_argument("--q", type=parse_q, default=parse_q("0.5:12:500"),
                   help="q grid in Å⁻¹: START:STOP:N or a comma-separated list (default 0.5:12:500)")
    s.add_argument("--probe", choices=["xray", "electron"], default="xray")
    s.add_argument("--signal", choices=["total", "atomic", "molecular", "sM"], default="total")
    s.add_argument("--energy-kev", type=float, default=None,
                   help="electron kinetic energy (keV): applies the relativistic factor to electron amplitudes")
    s.add_argument("--compton", action="store_true",
                   help="X-ray total: add incoherent (Compton) scattering (Hubbell et al. 1975; needs xraylib)")
    s.add_argument("--out", help="CSV output: q and one column per structure")
    s.add_argument("--plot", help="PNG plot of the pattern(s)")
    s.set_defaults(func=_cmd_simulate)

    g = sub.add_parser(
        "integrate", help="radial (azimuthal) integration of detector images to I(q) curves in HDF5",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Radially average every frame of every image file on one detector geometry (a pyFAI PONI "
                    "file) and write the profiles to one HDF5 file.",
        epilog="""\
formats: TIFF, EDF, CBF and the rest of fabio's (multi-frame files give all their frames); HDF5 (.h5, .hdf5,
  .nxs: --dataset, else the NeXus default signal or the first 3D/2D numeric dataset; 3D = a stack of frames);
  NumPy .npy (2D or 3D) and .npz (its first array).  The mask is read the same way (non-zero = left out).
output (HDF5): radial (npt,) with attrs units and long_name; intensity, sigma, count (frames, npt); source
  (frames,) e.g. "run.h5::/entry/data/data[3]"; the PONI geometry and the options as root attributes.
  See python -c "import xstructure.detector.io; help(xstructure.detector.io)".
errors: a file that cannot be read, or whose frames do not match the PONI's detector shape, is reported
  on stderr and left out (all its frames); the others are still integrated.
exit status: 0 all files integrated; 1 some files failed, the rest written; 2 nothing integrated, or a bad
  PONI, mask or option.
examples:
  xstructure integrate scan_*.tif --poni setup.poni --npt 1000 --out curves.h5 --plot curves.png
  xstructure integrate run.h5 --dataset /entry/data/data --poni setup.poni --unit 2th_deg \\
      --mask mask.edf --polarization 0.99 --error-model azimuthal --out run_curves.h5""")
    g.add_argument("images", nargs="+", help="image files (TIFF, EDF, CBF, HDF5, .npy, .npz, ...)")
    g.add_argument("--poni", required=True, help="pyFAI PONI file; its Detector_config max_shape sets the shape")
    g.add_argument("--npt", type=int, default=1000, help="number of radial bins (default 1000)")
    g.add_argument("--unit", choices=["q_A^-1", "q_nm^-1", "2th_deg", "2th_rad", "r_mm", "r_m"], default="q_A^-1",
                   help="radial unit (default q_A^-1)")
    g.add_argument("--mask", help="mask image (.npy, .edf, .tif, ...): non-zero pixels are left out")
    g.add_argument("--polarization", type=float, default=None,
                   help="polarisation factor to correct for, in [-1, 1] (pyFAI's: 0.99 for a horizontally "
                        "polarised synchrotron beam); default: no correction")
    g.add_argument("--no-solid-angle", dest="solid_angle", action="store_false",
                   help="do not correct for the pixels' solid angle")
    g.add_argument("--error-model", choices=["poisson", "azimuthal", "none"], default="poisson",
                   help="sigma from Poisson statistics (default), the azimuthal scatter, or none (no sigma)")
    g.add_argument("--saturation", type=float, help="leave out pixels above this value")
    g.add_argument("--dummy", type=float, help="leave out pixels equal to this value")
    g.add_argument("--radial-range", type=parse_range, metavar="MIN:MAX",
                   help="bin only this radial range, in --unit (default: the unmasked pixels' span)")
    g.add_argument("--dataset", help="HDF5 dataset of the frames, e.g. /entry/data/data")
    g.add_argument("--out", required=True, help="output HDF5 file of the curves")
    g.add_argument("--plot", help="PNG plot of the curves (up to 20; else 8 of them and the mean)")
    g.add_argument("--logy", action="store_true", help="logarithmic intensity axis in --plot")
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")
    g.set_defaults(func=_cmd_integrate)

    x = sub.add_parser(
        "crystal", help="a crystal's powder X-ray pattern (peaks, plot) and structure-factor grid",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Read a crystal (CIF or any file ase.io reads with a cell), print its cell, and on request "
                    "its powder diffraction peaks (|F|² · Lorentz-polarisation, symmetry-equivalent reflections "
                    "merged by 2θ) and F(hkl) on a box of Miller indices.",
        epilog="""\
outputs: --peaks CSV: two_theta_deg,d_A,h,k,l,multiplicity,intensity,wavelength_A (strongest = 100);
  --plot PNG: the pattern (pseudo-Voigt, FWHM 0.1°) and the peaks as sticks; --hkl-grid H --out NPZ:
  hkl_grid (complex, (2H+1)³, index [h+H, k+H, l+H]), intensity |F|², H, cell (rows a, b, c in Å).
exit status: 0 done; 2 a missing or unreadable file, no cell (or zero volume), or a bad option.
examples:
  xstructure crystal NaCl.cif --pxrd
  xstructure crystal TiO2.cif --pxrd --wavelength CuKa --doublet --plot pxrd.png --peaks peaks.csv
  xstructure crystal NaCl.cif --hkl-grid 8 --out grid.npz --factors electron""")
    x.add_argument("structure", help="crystal file with a unit cell (CIF, POSCAR, extxyz, ...)")
    x.add_argument("--pxrd", action="store_true", help="print the strongest powder peaks (2θ, d, hkl, mult, I)")
    x.add_argument("--wavelength", default="1.5406",
                   help="X-ray wavelength in Å or a line name: CuKa1, CuKa, MoKa1, CoKa, ... (default 1.5406)")
    x.add_argument("--doublet", action="store_true", help="Kα1 and Kα2 peaks (a named Kα line only)")
    x.add_argument("--two-theta", type=parse_two_theta, default=parse_two_theta("5:90:8501"), metavar="START:STOP:N",
                   help="2θ range (degrees) of the peaks, and the grid of --plot (default 5:90:8501)")
    x.add_argument("--top", type=int, default=10, help="how many of the strongest peaks --pxrd prints (default 10)")
    x.add_argument("--plot", help="PNG plot of the pattern with the peaks as sticks")
    x.add_argument("--peaks", help="CSV output of all peaks")
    x.add_argument("--factors", choices=["xray", "electron", "Z"], default="xray",
                   help="scattering factors: X-ray (Waasmaier-Kirfel, default), electron (Mott-Bethe) or Z")
    x.add_argument("--hkl-grid", type=int, metavar="H", help="F(hkl) for h, k, l in [-H, H] to --out (NPZ)")
    x.add_argument("--out", help="NPZ output of --hkl-grid")
    x.set_defaults(func=_cmd_crystal)

    _add_pool_parser(sub)
    _add_crystals_parser(sub)
    _add_learn_parsers(sub)

    i = sub.add_parser("info", help="version and build information (OpenMP, CPU instruction set, CUDA)")
    i.set_defaults(func=_cmd_info)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ValueError as exc:
        print(f"xstructure: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
