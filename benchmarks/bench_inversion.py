"""Inversion: pattern → structure, by learning and refinement, against honest baselines.

What is run (issue 7)
    1. Pools of N-methylmorpholine (NMM, 18 atoms): harmonic Wigner sampling at 300 K about the MMFF94
       minimum (10^5 members; --quick 2·10^4) and a broad one, Langevin MD at 1500 K (2·10^4; --quick 4·10^3);
       X-ray total scattering on 500 q points in 0.5–10 Å⁻¹.  Split by sample 80/10/10 (seed 0).
    2. Training on the train split (≤ 8·10^4 patterns), fresh Gaussian noise each epoch: the Transformer
       interpreter on each pool and the seed's CNN+GRU on the Wigner pool, within a total budget of
       --minutes (default 30; --quick 6) shared 55/15/30 %.
    3. Evaluation on one noisy draw of the first --n-test (default 2000) test patterns, 0.5 % relative
       Gaussian noise per q point: every model, the mean structure, pool fitting (χ² against every
       training pattern) and ridge regression (trained on noisy training patterns, penalty chosen on the
       validation split), and the best of them refined (40 Adam steps, pattern likelihood + bond-length
       prior).  Headline: heavy-atom RMSD after superposition with mirror images allowed; all-atom beside it.
    4. Error vs noise (Wigner pool): the Transformer, ridge and the mean structure at 0.25–2 %.
       And the information limit: the linearised Bayesian posterior of the structure given one pattern
       (Gaussian prior fitted to the training geometries, Jacobian of the pattern at 16 members, the noise
       model's likelihood), scored like the methods: what a perfect learner would reach in that
       approximation (:func:`xstructure.learn.evaluate.information_limit`).
    5. Inference speed of the Wigner Transformer: patterns/s for a batch of 10^4, and the latency of one
       pattern (median of 200 calls).

``--multi`` runs instead: Wigner 300 K pools of NMM, CHD and DT (3·10^4 each; --quick 6·10^3), a Transformer
per molecule (1/6 of the budget each) and one Transformer for all three (1/2 of the budget: the same total
time), each scored on each molecule's test patterns; the goal is the joint model within 20 % of the
per-molecule models' median heavy-atom RMSD.

``--detector`` runs instead: 2D detector images of laser-aligned NMM (the Wigner 300 K pool; the molecule's long
axis aligned along x with <P_2> = 0.4; 20 keV X-rays; 8 azimuth bins × the 500 q points; the polarisation
and solid-angle factors divided out).  Each pixel gets Gaussian noise of --noise × √8, so the azimuthal average
has --noise per q point: the same dose as the 1D patterns.  The detector CNN (8·10^4 training images, --quick
8·10^3 and 500 test images; --minutes of training, --quick 4) is scored with the mean structure, pool fitting and ridge regression on the
same noisy images, refined through the differentiable images, and set against the information limit of the
images and of the isotropic 1D pattern.

Pools and models are kept in --workdir (reused when present: delete it to start over).  Usage:
``python benchmarks/bench_inversion.py [--quick] [--multi | --detector] [--json report.json] [--plot fig.png] [--minutes 30]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info  # noqa: E402

import xstructure  # noqa: E402
from xstructure.learn import Noise, TrainConfig, evaluate, format_table, load_pool, train  # noqa: E402
from xstructure.learn.baselines import MeanStructure, Ridge  # noqa: E402
from xstructure.learn.evaluate import information_limit, report_plot, scores, strip_private  # noqa: E402

Q = np.linspace(0.5, 10.0, 500)


def make_pool(path, method, n, temperature, log):
    t0 = time.perf_counter()
    if not os.path.exists(os.path.join(path, "zarr.json")) or not xstructure.Pool.open(path).complete:
        xstructure.Pool.create(path, "NMM", method, n=n, temperature=temperature, seed=0, progress=True)
    pool = xstructure.Pool.open(path)
    sets = pool.pattern_sets()
    if not any(s["complete"] and s["signal"] == "total" for s in sets.values()):
        pool.simulate(Q, probe="xray", signal="total", name="xray_total", progress=True)
    dt = time.perf_counter() - t0
    log(f"pool {path}: {len(pool)} NMM geometries ({method}, {temperature:g} K), ready in {dt:.0f} s")
    return dt


def inference_speed(model, inputs, repeats: int = 5):
    """Patterns (or images) per second for a batch of 10^4 made from ``inputs`` (the median of ``repeats``
    timings, with their range: this VM's speed drifts), and one input's latency."""
    import torch

    x = np.concatenate([inputs] * int(np.ceil(10_000 / len(inputs))))[:10_000]
    model.predict(x[:512])
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.predict(x)
        rates.append(len(x) / (time.perf_counter() - t0))
    batched = float(np.median(rates))
    one = x[0]
    for _ in range(10):
        model.predict(one)
    ts = []
    for _ in range(200):
        t0 = time.perf_counter()
        model.predict(one)
        ts.append(time.perf_counter() - t0)
    return {"batched_patterns_per_s": batched, "batched_range": [float(min(rates)), float(max(rates))],
            "single_pattern_ms": 1e3 * float(np.median(ts)),
            "torch_threads": torch.get_num_threads()}


def noise_sweep(data, model, levels, n_test, seed=3):
    out = {"transformer": [], "ridge": [], "mean_structure": []}
    I_true, X_true = data.patterns["test"][:n_test], data.targets["test"][:n_test]
    ms = MeanStructure(data.targets["train"])
    for lv in levels:
        noise = Noise("gaussian", lv)
        I_obs = noise.apply(I_true, np.random.default_rng([seed, int(lv * 1e6)]))
        ridge = Ridge.on_noisy(data, noise, np.random.default_rng([seed, 1]), np.random.default_rng([seed, 2]))
        for name, pred in (("transformer", model.predict(I_obs)), ("ridge", ridge.predict(I_obs)),
                           ("mean_structure", ms.predict(I_obs))):
            out[name].append((lv, scores(pred, X_true, data.numbers)[0]["median_rmsd"]))
    return out


def multi_molecule(args, minutes, log) -> dict:
    """One Transformer for NMM, CHD and DT against one per molecule, at equal total training time."""
    n = 6_000 if args.quick else 30_000
    tag = "quick" if args.quick else "full"
    mols = ("NMM", "CHD", "DT")
    data = {}
    for mol in mols:
        path = os.path.join(args.workdir, f"multi_{mol}_{tag}.zarr")
        if not os.path.exists(os.path.join(path, "zarr.json")) or not xstructure.Pool.open(path).complete:
            xstructure.Pool.create(path, mol, "wigner", n=n, temperature=300.0, seed=0, progress=True)
        pool = xstructure.Pool.open(path)
        if not pool.pattern_sets():
            pool.simulate(Q, probe="xray", signal="total", name="xray_total", progress=True)
        data[mol] = load_pool(path)
    noise = Noise("gaussian", args.noise)
    per, out = {}, {"pool_size": n, "per_molecule": {}, "joint": {}, "ratio_joint_to_per_molecule": {}}
    for mol in mols:
        cfg = TrainConfig(epochs=500, patience=10, noise=noise.to_dict(), max_minutes=minutes / 6)
        log(f"training a Transformer on {mol} alone ({minutes / 6:.1f} min)")
        per[mol] = train(data[mol], os.path.join(args.workdir, f"multi_model_{mol}_{tag}"), cfg, progress=False,
                         log=log)
    cfg = TrainConfig(epochs=500, patience=10, noise=noise.to_dict(), max_minutes=minutes / 2)
    log(f"training one Transformer on {', '.join(mols)} together ({minutes / 2:.1f} min)")
    joint = train([data[m] for m in mols], os.path.join(args.workdir, f"multi_model_joint_{tag}"), cfg,
                  progress=False, log=log)
    for mol in mols:
        I_true, X = data[mol].patterns["test"][:args.n_test], data[mol].targets["test"][:args.n_test]
        I_obs = noise.apply(I_true, np.random.default_rng([5, 7]))
        a = scores(per[mol].predict(I_obs), X, data[mol].numbers)[0]
        b = scores(joint.predict(I_obs, data[mol].molecule), X, data[mol].numbers)[0]
        m0 = scores(MeanStructure(data[mol].targets["train"]).predict(I_obs), X, data[mol].numbers)[0]
        out["per_molecule"][mol], out["joint"][mol] = a, b
        out.setdefault("mean_structure", {})[mol] = m0
        out["ratio_joint_to_per_molecule"][mol] = b["median_rmsd"] / a["median_rmsd"]
        log(f"  {mol}: per-molecule median {a['median_rmsd']:.4f} Å, joint {b['median_rmsd']:.4f} Å "
            f"(ratio {b['median_rmsd'] / a['median_rmsd']:.3f}); mean structure {m0['median_rmsd']:.4f} Å")
    out["within_20_percent"] = all(r <= 1.2 for r in out["ratio_joint_to_per_molecule"].values())
    return out


def goals(methods: dict, best: str, inference: dict, unit: str) -> dict:
    """The issue's goals for model ``best`` in an evaluate report's ``methods``, and for its inference speed."""
    m = methods
    return {"best_model": best,
            "median <= 0.5 x mean_structure": m[best]["median_rmsd"] <= 0.5 * m["mean_structure"]["median_rmsd"],
            "median < pool_fit": m[best]["median_rmsd"] < m["pool_fit"]["median_rmsd"],
            "median < ridge": m[best]["median_rmsd"] < m["ridge"]["median_rmsd"],
            "refinement lowers it": any(k.endswith("+refine") and m[k]["median_rmsd"] < m[k[:-7]]["median_rmsd"]
                                        for k in m),
            "accuracy@0.05 >= 75%": m[best]["accuracy@0.05"] >= 0.75,
            f"inference >= 1e4 {unit}s/s": inference["batched_patterns_per_s"] >= 1e4,
            f"single {unit} <= 5 ms": inference["single_pattern_ms"] <= 5.0}


def detector_run(args, minutes, log) -> dict:
    """The detector CNN on aligned-ensemble images against the baselines on the same images."""
    import dataclasses

    from xstructure.learn.detector import detector_data

    tag = "quick" if args.quick else "full"
    n_w = 20_000 if args.quick else 100_000
    path = os.path.join(args.workdir, f"wigner300_{tag}.zarr")
    make_pool(path, "wigner", n_w, 300.0, log)
    d = load_pool(path)
    n_train = 8_000 if args.quick else 80_000
    n_test = min(args.n_test, 500) if args.quick else args.n_test   # refining an image costs ~0.15 s
    sub = {"train": slice(0, n_train), "val": slice(0, 2000), "test": slice(0, n_test)}
    d = dataclasses.replace(d, index={k: d.index[k][s] for k, s in sub.items()},
                            patterns={k: d.patterns[k][s] for k, s in sub.items()},
                            targets={k: d.targets[k][s] for k, s in sub.items()})
    n_chi = 8
    t0 = time.perf_counter()
    dd = detector_data(d, n_chi, energy_kev=20.0, p2=0.4, progress=sys.stderr.isatty())
    t_img = time.perf_counter() - t0
    log(f"{sum(len(v) for v in dd.patterns.values())} images of {dd.input_shape} made in {t_img:.0f} s")
    noise = Noise("gaussian", args.noise * np.sqrt(n_chi))
    cfg = TrainConfig(model="detector_cnn", epochs=200, batch=256, lr=1e-3, patience=10, noise=noise.to_dict(),
                      max_minutes=minutes, d=64, layers=1, tokens=8, channels=8)
    t0 = time.perf_counter()
    out_dir = os.path.join(args.workdir, f"model_wigner300_detector_cnn_{cfg.layers}layer_{tag}")
    log(f"training detector_cnn on {n_train} images ({minutes:.1f} min budget)")
    m = train(dd, out_dir, cfg, progress=sys.stderr.isatty(), log=log)
    st = json.loads(Path(out_dir, "state.json").read_text())["state"]
    res = {"image": dd.image, "noise_per_pixel": noise.to_dict(), "noise_per_q_after_averaging": args.noise,
           "images_seconds": t_img,
           "training": {"train_images": n_train, "epochs": st["epoch"], "best_epoch": st["best_epoch"],
                        "minutes": st["minutes"], "wall_s_this_run": time.perf_counter() - t0}}
    log(f"\nevaluation on {n_test} test images")
    rep = evaluate(dd, noise, models={"detector_cnn": m}, n_test=n_test, log=log)
    log(format_table(rep))
    res["report"] = strip_private(rep)
    res["information_limit"] = {"images": information_limit(dd, noise),
                                "isotropic_1d": information_limit(d, Noise("gaussian", args.noise))}
    for k, lim in res["information_limit"].items():
        log(f"information limit ({k}): median {lim['median_rmsd']:.4f} Å, acc@0.05 {lim['accuracy@0.05']:.1%}")
    x = dd.patterns["test"].reshape(-1, *dd.input_shape)
    res["inference"] = inference_speed(m, x)
    mm = rep["methods"]
    res["goals"] = goals(mm, "detector_cnn", res["inference"], "image")
    res["goals"]["best accuracy@0.05 >= 75%"] = max(v["accuracy@0.05"] for v in mm.values()) >= 0.75
    log(f"inference: {res['inference']['batched_patterns_per_s']:.0f} images/s batched, "
        f"{res['inference']['single_pattern_ms']:.2f} ms for one")
    log("goals (detector images, Wigner 300 K): " + json.dumps(res["goals"]))
    if args.plot:
        report_plot(rep, dd, args.plot)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--minutes", type=float, help="total training budget (default 30, --quick 6)")
    ap.add_argument("--n-test", type=int, default=2000)
    ap.add_argument("--noise", type=float, default=0.005, help="relative Gaussian noise per q point")
    ap.add_argument("--workdir", default="bench_inversion_work")
    ap.add_argument("--multi", action="store_true",
                    help="instead: one Transformer for NMM, CHD and DT vs one per molecule (equal total time)")
    ap.add_argument("--detector", action="store_true",
                    help="instead: the detector CNN on 2D images of aligned molecules, with the baselines on them")
    ap.add_argument("--json")
    ap.add_argument("--plot")
    args = ap.parse_args(argv)
    log = lambda s: print(s, flush=True)  # noqa: E731
    minutes = args.minutes or ((4.0 if args.detector else 6.0) if args.quick else 30.0)
    n_w, n_md = (20_000, 4_000) if args.quick else (100_000, 20_000)
    tag = "quick" if args.quick else "full"
    os.makedirs(args.workdir, exist_ok=True)
    if args.detector:
        res = {"machine": machine_info(), "budget_minutes": minutes, "detector": detector_run(args, minutes, log)}
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=1, default=str))
        return 0
    if args.multi:
        res = {"machine": machine_info(), "noise": {"kind": "gaussian", "level": args.noise},
               "budget_minutes": minutes, "multi_molecule": multi_molecule(args, minutes, log)}
        log(json.dumps({k: v for k, v in res["multi_molecule"].items() if k.startswith(("ratio", "within"))}))
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=1, default=str))
        return 0
    wd = lambda name: os.path.join(args.workdir, f"{name}_{tag}")  # noqa: E731
    res = {"machine": machine_info(peers=("zarr", "safetensors")), "noise": {"kind": "gaussian", "level": args.noise},
           "budget_minutes": minutes, "pools": {}, "reports": {}, "training": {}}
    t_all = time.perf_counter()
    res["pools"]["wigner300"] = {"n": n_w, "seconds": make_pool(wd("wigner300") + ".zarr", "wigner", n_w, 300.0, log)}
    res["pools"]["md1500"] = {"n": n_md, "seconds": make_pool(wd("md1500") + ".zarr", "md", n_md, 1500.0, log)}
    data = {k: load_pool(wd(k) + ".zarr") for k in ("wigner300", "md1500")}
    noise = Noise("gaussian", args.noise)
    small = dict(d=64, layers=2, tokens=8, hidden=256, enc_layers=0)  # ~1.2·10^4 patterns/s on 2 cores
    runs = [("wigner300", "transformer", 0.55, small),
            ("wigner300", "cnn_gru", 0.15, dict(d=128)),
            ("md1500", "transformer", 0.30, small)]
    models = {}
    for pool, kind, share, hp in runs:
        cfg = TrainConfig(model=kind, epochs=200, batch=256, lr=1e-3, patience=10, noise=noise.to_dict(),
                          max_minutes=share * minutes, **hp)
        t0 = time.perf_counter()
        log(f"training {kind} on {pool} ({len(data[pool].patterns['train'])} patterns, "
            f"{share * minutes:.1f} min budget)")
        m = train(data[pool], wd(f"model_{pool}_{kind}"), cfg, progress=sys.stderr.isatty(), log=log)
        st = json.loads(Path(wd(f"model_{pool}_{kind}"), "state.json").read_text())["state"]
        res["training"][f"{pool}/{kind}"] = {"train_patterns": len(data[pool].patterns["train"]),
                                             "epochs": st["epoch"], "best_epoch": st["best_epoch"],
                                             "best_val_rmsd_all_atoms": st["best"], "minutes": st["minutes"],
                                             "wall_s_this_run": time.perf_counter() - t0}
        models.setdefault(pool, {})[kind] = m
    for pool in ("wigner300", "md1500"):
        log(f"\nevaluation on {pool} (noise {args.noise:.2%} per q point, {args.n_test} test patterns)")
        rep = evaluate(data[pool], noise, models=models[pool], n_test=args.n_test, log=log)
        res["reports"][pool] = strip_private(rep)
        if pool == "wigner300":
            rep_w = rep
        log(format_table(rep))
    res["information_limit"] = {}
    for pool in ("wigner300", "md1500"):
        lim = information_limit(data[pool], noise)
        res["information_limit"][pool] = lim
        log(f"information limit on {pool} (linearised Bayes posterior, Gaussian prior): median "
            f"{lim['median_rmsd']:.4f} Å, acc@0.05 {lim['accuracy@0.05']:.1%} (prior alone: median "
            f"{lim['prior_median_rmsd']:.4f} Å)")
    sweep = noise_sweep(data["wigner300"], models["wigner300"]["transformer"], (0.0025, 0.005, 0.01, 0.02),
                        args.n_test)
    sweep["information limit"] = [(lv, information_limit(data["wigner300"], Noise("gaussian", lv))["median_rmsd"])
                                  for lv, _ in sweep["transformer"]]
    res["noise_sweep_wigner300"] = sweep
    res["inference"] = inference_speed(models["wigner300"]["transformer"], data["wigner300"].patterns["test"])
    res["total_minutes"] = (time.perf_counter() - t_all) / 60
    m = res["reports"]["wigner300"]["methods"]
    model_names = [k for k in m if k in ("transformer", "cnn_gru")]
    best = min(model_names, key=lambda k: m[k]["median_rmsd"])
    res["goals_wigner300"] = goals(m, best, res["inference"], "pattern")
    log("\nerror vs noise (median heavy-atom RMSD, Å), Wigner 300 K:")
    for name, pts in sweep.items():
        log(f"  {name:16s} " + "  ".join(f"{lv:.2%}: {r:.4f}" for lv, r in pts))
    log(f"inference: {res['inference']['batched_patterns_per_s']:.0f} patterns/s batched, "
        f"{res['inference']['single_pattern_ms']:.2f} ms for one pattern")
    log("goals (Wigner 300 K): " + json.dumps(res["goals_wigner300"]))
    log(f"total {res['total_minutes']:.1f} min")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=str))
    if args.plot:
        report_plot(rep_w, data["wigner300"], args.plot, extra_noise=sweep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
