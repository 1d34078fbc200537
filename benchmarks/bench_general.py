"""The general interpreter on molecules it has never seen (held-out scaffolds), against honest baselines.

On each held-out molecule (test part of the model's scaffold split): 300 K Wigner samples from an
:class:`xstructure.Pool`, X-ray I_mol on the model's grid (0.5–10 Å⁻¹, 200 points), 0.5 % relative Gaussian noise
per q point; heavy-atom RMSD after superposition of

* ``equilibrium``: the MMFF94 minimum the model is given (the baseline);
* ``linear``: the model's per-molecule linear reader alone (ridge on the molecule's thermal ensemble);
* ``network``: the reader + the network trained on other molecules (``iterations=0``);
* ``general``: the shipped model as it predicts by default: then its calibrated Gauss–Newton iterations, fitted
  per molecule on its own simulated reference ensemble;
* ``general+refine``: then refined through :func:`xstructure.ops.debye` with bond restraints;
* ``general, k iterations`` (k in ``FRONTIER``): the shipped model with its calibrated iterations capped at k
  (``predict(..., iterations=k)``), the settings between ``network`` and ``general``: with the speed part, the
  trade between accuracy and patterns per second.

Also: per-molecule Transformers trained on 3 held-out molecules (the ceiling); a hot (Langevin MD, 1500 K) pool
per molecule for a few held-out molecules, against pool fitting (χ² nearest member of that pool), scored on test
frames of independent trajectories spread over the pool's time window (``--hot-trajectories``), read with the
model's Wigner reader and with its MD reader (``--hot-reference`` frames); identification
among the library's isomers of a formula against noise, beside a χ² match to each candidate's equilibrium
pattern; inference speed.

    python benchmarks/bench_general.py --json docs/figures/bench_general.json --plot docs/figures/bench_general.png
    python benchmarks/bench_general.py --quick --json /tmp/general_quick.json      # ≤ 10 min
    python benchmarks/bench_general.py --parts ceiling speed --frontier-plot docs/figures/bench_general_frontier.png
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

ELEMENT_GROUPS = (("hydrocarbon", set()), ("N", {7}), ("O", {8}), ("F", {9}), ("S", {16}), ("Cl", {17}))
SIZE_BINS = ((5, 10), (11, 15), (16, 20), (21, 25), (26, 30))
FRONTIER = (1, 2, 8)
"""Caps on the calibrated iterations scored besides 0 (``network``) and the default (``general``); 8, the model's
``config["iterations"]``, runs every iteration the calibration kept."""


def capped(k: int) -> str:
    """The method name of the model with its iterations capped at k."""
    return f"general, {k} iteration" + ("s" if k > 1 else "")


def speed_tag(iterations) -> str:
    """The suffix of the speed part's keys for ``predict(..., iterations=...)``: "" for the default (None)."""
    return "" if iterations is None else ("_network" if iterations == 0 else f"_iterations_{iterations}")


def scores(rmsd: np.ndarray) -> dict:
    return {"median_rmsd": float(np.median(rmsd)), "mean_rmsd": float(np.mean(rmsd)),
            "accuracy_0.05": float(np.mean(rmsd < 0.05)), "n": int(len(rmsd))}


def heavy_rmsd(P, X, numbers, reflection=False):
    import xstructure as xs

    h = np.asarray(numbers) > 1
    return xs.rmsd(np.ascontiguousarray(P[:, h]), np.ascontiguousarray(X[:, h]), reflection=reflection)


def noisy(I, level, rng):
    return I + level * np.abs(I) * rng.standard_normal(I.shape)


def patterns_of(pool, q, probe):
    """The pool's I_mol patterns of the probe (simulated once, named after the probe)."""
    sets = pool.pattern_sets()
    if probe not in sets or not sets[probe]["complete"]:
        pool.simulate(q, probe=probe, signal="molecular", name=probe, progress=False)
    return np.asarray(pool.patterns(probe)[1][:])


def wigner_set(work, smiles, key, n, q, seed, probe):
    """n Wigner 300 K samples and their patterns through a Pool (made once, reused; one pool serves both probes)."""
    from xstructure import Pool

    path = os.path.join(work, "test", key)
    pool = Pool.create(path, smiles, "wigner", n=n, temperature=300.0, seed=10_000 + seed, chunk=n, progress=False)
    return np.asarray(pool.positions[:]), patterns_of(pool, q, probe), pool.numbers


def held_out(model, args, rng):
    """Per-molecule scores on the held-out molecules."""
    test = [m for m in model.config["split"] if m["split"] == "test"]
    test = [test[i] for i in sorted(np.random.default_rng(1).permutation(len(test))[:args.molecules])]
    q = model.grid
    rows, pooled = [], {}
    t0 = time.perf_counter()
    for k, m in enumerate(test):
        try:
            X, I, Z = wigner_set(args.work, m["smiles"], m["inchikey"], args.samples, q, k, model.config["probe"])
            Io = noisy(I, 0.005, rng)
            P, reader = model.predict(Io, m["smiles"], q, return_reader=True)
        except ValueError as exc:  # MMFF94 cannot minimise it (a saddle) or cannot embed it
            print(f"  skip {m['smiles']}: {exc}", flush=True)
            continue
        x0 = reader.atoms.positions        # heavy_rmsd superposes: no frame to share
        res = {"equilibrium": heavy_rmsd(np.broadcast_to(x0, X.shape), X, Z),
               "linear": heavy_rmsd(reader.linear(Io), X, Z),
               "network": heavy_rmsd(model.predict(Io, m["smiles"], q, iterations=0), X, Z),
               "general": heavy_rmsd(P, X, Z)}
        for it in FRONTIER:
            res[capped(it)] = heavy_rmsd(model.predict(Io, m["smiles"], q, iterations=it), X, Z)
        if args.refine_steps:
            Pr = model.predict(Io[:args.refine_n], m["smiles"], q, refine_steps=args.refine_steps)
            res["general+refine"] = heavy_rmsd(Pr, X[:args.refine_n], Z)
            res["general (same samples)"] = res["general"][:args.refine_n]
        for name, v in res.items():
            pooled.setdefault(name, []).append(v)
        els = sorted({int(z) for z in Z})
        rows.append(dict(smiles=m["smiles"], inchikey=m["inchikey"], scaffold=m["scaffold"], n_atoms=int(len(Z)),
                         n_heavy=int((Z > 1).sum()), elements=els,
                         iterations=reader.default_iterations or 0, iterations_kept=len(reader.stages or []),
                         median_rmsd={n: float(np.median(v)) for n, v in res.items()}))
        if (k + 1) % 10 == 0:
            print(f"  held-out {k + 1}/{len(test)} ({time.perf_counter() - t0:.0f} s)", flush=True)
    methods = {n: scores(np.concatenate(v)) for n, v in pooled.items()}
    base = methods["equilibrium"]["median_rmsd"]
    for n, s in methods.items():
        s["ratio_to_equilibrium"] = s["median_rmsd"] / base
    below = {n: float(np.mean([r["median_rmsd"][n] < r["median_rmsd"]["equilibrium"] for r in rows]))
             for n in ("general", "linear", "network", *map(capped, FRONTIER))}
    groups = {}
    for lo, hi in SIZE_BINS:
        sel = [i for i, r in enumerate(rows) if lo <= r["n_atoms"] <= hi]
        groups[f"{lo}-{hi} atoms"] = _group(sel, rows, pooled)
    for name, els in ELEMENT_GROUPS:
        if els:
            sel = [i for i, r in enumerate(rows) if els <= set(r["elements"])]
        else:
            sel = [i for i, r in enumerate(rows) if set(r["elements"]) <= {1, 6}]
        groups[f"contains {name}" if els else name] = _group(sel, rows, pooled)
    return dict(methods=methods, baseline="equilibrium", molecules=rows,
                fraction_of_molecules_below_baseline=below,
                groups=groups, seconds=time.perf_counter() - t0)


def _group(sel, rows, pooled):
    if not sel:
        return dict(molecules=0)
    out = dict(molecules=len(sel))
    for n in ("equilibrium", "linear", "network", "general"):
        out[n] = float(np.median(np.concatenate([pooled[n][i] for i in sel])))
    out["ratio"] = out["general"] / out["equilibrium"]
    out["below_baseline"] = float(np.mean([rows[i]["median_rmsd"]["general"] < rows[i]["median_rmsd"]["equilibrium"]
                                           for i in sel]))
    return out


def ceiling(model, held, args, rng):
    """Per-molecule Transformers on 3 held-out molecules (pools of their own), scored on the same test samples."""
    from xstructure import Pool
    from xstructure.learn import InversionModel
    from xstructure.learn.data import Noise
    from xstructure.learn.tasks import train_store

    rows = sorted(held["molecules"], key=lambda r: r["n_atoms"])
    picks = [rows[len(rows) // 4], rows[len(rows) // 2], rows[(3 * len(rows)) // 4]]
    out = []
    q = model.grid
    for k, r in enumerate(picks):
        t0 = time.perf_counter()
        path = os.path.join(args.work, "ceiling", r["inchikey"])
        pool = Pool.create(path, r["smiles"], "wigner", n=args.ceiling_pool, temperature=300.0, seed=20_000 + k,
                           chunk=2048, progress=False)
        patterns_of(pool, q, model.config["probe"])
        probe = model.config["probe"]
        mdir = os.path.join(args.work, "ceiling", r["inchikey"] + ("-model" if probe == "xray" else f"-model-{probe}"))
        train_store([path], mdir, pattern_set=probe, epochs=args.ceiling_epochs,
                    noise=Noise("gaussian", 0.005), seed=k, max_minutes=args.ceiling_minutes)
        per = InversionModel.load(mdir)
        idx = [i for i, m in enumerate(held["molecules"]) if m["inchikey"] == r["inchikey"]][0]
        X, I, Z = wigner_set(args.work, r["smiles"], r["inchikey"], args.samples, q, idx, model.config["probe"])
        Io = noisy(I, 0.005, np.random.default_rng(99 + k))
        P_gen, reader = model.predict(Io, r["smiles"], q, return_reader=True)
        x0 = reader.atoms.positions
        res = dict(smiles=r["smiles"], n_atoms=r["n_atoms"], pool=args.ceiling_pool,
                   equilibrium=float(np.median(heavy_rmsd(np.broadcast_to(x0, X.shape), X, Z))),
                   general=float(np.median(heavy_rmsd(P_gen, X, Z))),
                   network=float(np.median(heavy_rmsd(model.predict(Io, r["smiles"], q, iterations=0), X, Z))),
                   per_molecule=float(np.median(heavy_rmsd(per.predict(Io), X, Z))),
                   seconds=time.perf_counter() - t0)
        res["general_over_per_molecule"] = res["general"] / res["per_molecule"]
        res["network_over_per_molecule"] = res["network"] / res["per_molecule"]
        for it in FRONTIER:
            res[f"general_{it}"] = float(np.median(heavy_rmsd(model.predict(Io, r["smiles"], q, iterations=it), X, Z)))
            res[f"general_{it}_over_per_molecule"] = res[f"general_{it}"] / res["per_molecule"]
        print(f"  ceiling {r['smiles']}: general {res['general']:.4f}, per-molecule {res['per_molecule']:.4f}, "
              f"equilibrium {res['equilibrium']:.4f} Å", flush=True)
        out.append(res)
    return out


def hot_test_set(work, smiles, key, k, n, trajectories):
    """The k-th hot molecule's n test frames (1500 K Langevin MD): independent trajectories, their frames spread
    over the hot pool's time window (its trajectories run 0.5–10.5 ps after the start at the minimum; here a frame
    every 10 ps / frames per trajectory), so that they sample the hot ensemble, not one short stretch of a
    trajectory that stays in its first conformer's basin."""
    from xstructure import Pool

    per = -(-n // trajectories)
    return Pool.create(os.path.join(work, "hot", key) + "-test-spread", smiles, "md", n=n, temperature=1500.0,
                       seed=40_000 + k, chunk=per, interval=20_000 // per, progress=False)


def hot(model, held, args, rng):
    """Hot (1500 K Langevin MD) samples: the model at 1500 K against pool fitting on the molecule's own hot pool."""
    import torch

    from xstructure import Pool
    from xstructure.learn.general import robust_sigma

    rows = sorted(held["molecules"], key=lambda r: r["n_atoms"])
    picks = [rows[int(i)] for i in np.linspace(len(rows) // 5, len(rows) - 1 - len(rows) // 5, args.hot_molecules)]
    out = []
    q = model.grid
    for k, r in enumerate(picks):
        t0 = time.perf_counter()
        base = os.path.join(args.work, "hot", r["inchikey"])
        pool = Pool.create(f"{base}-pool{args.hot_pool}", r["smiles"], "md", n=args.hot_pool, temperature=1500.0,
                           seed=30_000 + k, chunk=1000, progress=False)
        test = hot_test_set(args.work, r["smiles"], r["inchikey"], k, args.samples, args.hot_trajectories)
        Ipool = patterns_of(pool, q, model.config["probe"])
        t_pool = time.perf_counter() - t0
        X, Z = np.asarray(test.positions[:]), test.numbers
        Io = noisy(patterns_of(test, q, model.config["probe"]), 0.005, rng)
        P_gen, reader = model.predict(Io, r["smiles"], q, temperature=1500.0, return_reader=True)
        t_md = time.perf_counter()   # the MD reader (args.hot_reference frames) is built and calibrated here
        P_md, reader_md = model.predict(Io, r["smiles"], q, temperature=1500.0, ensemble="md", return_reader=True)
        t_md = time.perf_counter() - t_md
        t_search = time.perf_counter()
        P_search = (model.predict(Io, r["smiles"], q, temperature=1500.0, ensemble="md", search=args.hot_search)
                    if args.hot_search else None)
        t_search = time.perf_counter() - t_search
        x0 = reader.atoms.positions
        Xpool = np.asarray(pool.positions[:])
        sig = robust_sigma(torch.as_tensor(Io), 0.005).numpy()
        chi = np.stack([(((Ipool - Io[i]) / sig[i]) ** 2).sum(1) for i in range(len(Io))])   # (tests, pool)
        by_size = {}
        for n_sub in sorted({min(len(Ipool), s) for s in (250, 500, 1000, 2000, 4000, 10_000, 30_000, len(Ipool))}):
            best = np.argmin(chi[:, :n_sub], axis=1)
            by_size[n_sub] = float(np.median(heavy_rmsd(Xpool[best], X, Z)))
        Pfit = Xpool[np.argmin(chi, axis=1)]
        res = dict(smiles=r["smiles"], n_atoms=r["n_atoms"], pool=args.hot_pool, pool_seconds=t_pool,
                   md_reference=int(model.config["md_reference"]), md_reader_seconds=t_md,
                   equilibrium=float(np.median(heavy_rmsd(np.broadcast_to(x0, X.shape), X, Z))),
                   linear=float(np.median(heavy_rmsd(reader.linear(Io), X, Z))),
                   general_wigner=float(np.median(heavy_rmsd(P_gen, X, Z))),
                   network_wigner=float(np.median(heavy_rmsd(
                       model.predict(Io, r["smiles"], q, temperature=1500.0, iterations=0), X, Z))),
                   linear_md=float(np.median(heavy_rmsd(reader_md.linear(Io), X, Z))),
                   general=float(np.median(heavy_rmsd(P_md, X, Z))),
                   pool_fitting=float(np.median(heavy_rmsd(Pfit, X, Z))),
                   pool_fitting_by_pool_size={str(k): v for k, v in by_size.items()})
        res["general_ratio"] = res["general"] / res["equilibrium"]
        if P_search is not None:   # the MD reader + the multi-start search (kept only where its check favours it)
            res.update(general_search=float(np.median(heavy_rmsd(P_search, X, Z))), search_starts=args.hot_search,
                       search_check=reader_md.search_check, search_seconds=t_search)
            res["general_search_ratio"] = res["general_search"] / res["equilibrium"]
        # The same with mirror images allowed in the superposition (an isotropic pattern cannot tell a structure
        # from its mirror image; pool fitting, which picks one member, gains from this, the model's estimates little)
        res["mirror_allowed"] = {n: float(np.median(heavy_rmsd(P, X, Z, reflection=True))) for n, P in
                                 (("equilibrium", np.broadcast_to(x0, X.shape)), ("general", P_md),
                                  ("general_wigner", P_gen), ("pool_fitting", Pfit), ("general_search", P_search))
                                 if P is not None}
        print(f"  hot {r['smiles']}: general (MD reader) {res['general']:.4f}, (Wigner reader) "
              f"{res['general_wigner']:.4f}, (MD reader + search) {res.get('general_search', float('nan')):.4f}, "
              f"pool fitting {res['pool_fitting']:.4f}, "
              f"equilibrium {res['equilibrium']:.4f} Å ({t_pool:.0f} s for the pools)", flush=True)
        out.append(res)
    return out


def identification(model, args, rng):
    """Top-1 accuracy among a formula's isomers in the library, against noise; the measured patterns come from
    300 K Langevin MD geometries, the candidates' ensembles from the harmonic Wigner model."""
    import torch

    import xstructure as xs
    from xstructure.learn.general import identify, robust_sigma
    from xstructure.learn.library import Library
    from xstructure.pools import sampling

    recs = model.config["molecules"] + model.config["split"]
    lib = Library.from_records([dict(smiles=r["smiles"], inchikey=r["inchikey"], formula=_formula(r["smiles"]),
                                     scaffold="", source="", split=r.get("split", "train")) for r in recs])
    sets = lib.isomer_sets(3)
    order = np.random.default_rng(5).permutation(sorted(sets))
    q = model.grid
    formulas, usable = [], {}
    for f in order:
        members = [lib.smiles[i] for i in sets[f][:args.max_isomers]]
        ok = []
        for s in members:
            try:
                model.atoms_of(s)
                sampling.minimum_modes(model.atoms_of(s))
                ok.append(s)
            except ValueError:
                continue
        if len(ok) >= 3:
            usable[f] = ok
            formulas.append(f)
        if len(formulas) >= args.formulas:
            break
    levels = args.id_noise
    acc = {"ensemble_likelihood": {lv: [] for lv in levels}, "equilibrium_chi2": {lv: [] for lv in levels}}
    for f in formulas:
        cands = usable[f]
        eq = {}
        for s in cands:
            r = model.reader(s)
            eq[s] = torch.as_tensor(xs.simulate(r.atoms, q, probe=model.config["probe"], signal="molecular"))
        for truth in cands:
            atoms = model.atoms_of(truth)
            # the truth from Langevin MD at 300 K (classical, anharmonic), not from the scorer's own harmonic model
            X = sampling.sample(atoms, "md", args.id_samples, 300.0, seed=int(rng.integers(1 << 30)))["positions"]
            I = xs.simulate((atoms.numbers, X), q, probe=model.config["probe"], signal="molecular")
            for lv in levels:
                for i in range(len(I)):
                    Io = noisy(I[i], lv, rng)
                    ranked = identify(Io, cands, q, model=model, noise=lv)
                    acc["ensemble_likelihood"][lv].append(ranked[0][0] == truth)
                    It = torch.as_tensor(Io[None])
                    sig = robust_sigma(It, lv)
                    chi = {s: float((((It - eq[s]) / sig) ** 2).mean()) for s in cands}
                    acc["equilibrium_chi2"][lv].append(min(chi, key=chi.get) == truth)
        print(f"  identification {f}: {len(cands)} isomers", flush=True)
    return dict(formulas={f: usable[f] for f in formulas}, n_formulas=len(formulas),
                patterns_per_level=len(acc["ensemble_likelihood"][levels[0]]),
                top1={m: {str(lv): float(np.mean(v)) for lv, v in d.items()} for m, d in acc.items()})


def _formula(smiles):
    from rdkit import Chem
    from rdkit.Chem.rdMolDescriptors import CalcMolFormula

    return CalcMolFormula(Chem.MolFromSmiles(smiles))


def speed(model, held, args):
    """Patterns per second (batched, the molecule's reader cached; the median of ``--speed-repeats`` timings and
    their range) and one pattern's latency: the default
    (calibrated iterations after the network), ``iterations=0`` (the network alone) and the iterations capped at each
    of ``FRONTIER``."""
    import torch

    import xstructure as xs

    rows = sorted(held["molecules"], key=lambda r: r["n_atoms"])
    out = []
    for r in (rows[len(rows) // 2], rows[-1]):
        q = model.grid
        reader = model.reader(r["smiles"])
        X = np.broadcast_to(reader.atoms.positions, (args.speed_batch, len(reader.atoms), 3)).copy()
        X += 0.05 * np.random.default_rng(0).standard_normal(X.shape)
        I = xs.simulate((reader.numbers, X), q, probe=model.config["probe"], signal="molecular")
        res = dict(smiles=r["smiles"], n_atoms=r["n_atoms"], batch=args.speed_batch, threads=torch.get_num_threads())
        for it in (None, 0, *FRONTIER):
            tag = speed_tag(it)
            model.predict(I[:64], r["smiles"], q, iterations=it)
            rates = []
            for _ in range(args.speed_repeats):   # this VM's speed drifts: the median of several timings
                t0 = time.perf_counter()
                model.predict(I, r["smiles"], q, iterations=it)
                rates.append(len(I) / (time.perf_counter() - t0))
            batched = float(np.median(rates))
            res["patterns_per_s_range" + tag] = [float(min(rates)), float(max(rates))]
            lat = []
            for i in range(args.speed_single):
                t0 = time.perf_counter()
                model.predict(I[i], r["smiles"], q, iterations=it)
                lat.append(time.perf_counter() - t0)
            res["patterns_per_s" + tag] = float(batched)
            res["single_ms_median" + tag] = 1e3 * float(np.median(lat))
            print(f"  speed {r['smiles']} ({r['n_atoms']} atoms), iterations={it}: {batched:.0f} patterns/s "
                  f"batched, {1e3 * np.median(lat):.1f} ms single", flush=True)
        reader = model.reader(r["smiles"])
        res["iterations"], res["iterations_kept"] = reader.default_iterations or 0, len(reader.stages or [])
        for tag, it in (("", None), ("_network", 0)):
            model.clear_cache()
            t0 = time.perf_counter()
            model.predict(I[0], r["smiles"], q, iterations=it)
            res["first_call_s" + tag] = time.perf_counter() - t0
        out.append(res)
    return out


def plot(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullLocator

    rows = report["held_out"]["molecules"]
    probe = {"xray": "X-ray", "electron": "electron"}[report["settings"].get("probe", "xray")]
    fig, axes = plt.subplots(2, 2, figsize=(13, 9.5))
    ax = axes.ravel()
    n = np.array([r["n_atoms"] for r in rows])
    series = (("linear", "linear reader alone", "tab:orange", -0.2), ("network", "reader + network", "tab:green", 0.0),
              ("general", "general model (+ calibrated iterations)", "tab:blue", 0.2))
    for name, label, c, dx in series:
        if name not in rows[0]["median_rmsd"]:
            continue
        ratio = np.array([r["median_rmsd"][name] / r["median_rmsd"]["equilibrium"] for r in rows])
        ax[0].scatter(n + dx, ratio, s=12, alpha=0.7, c=c, label=label)
    ax[0].axhline(1.0, color="k", lw=0.8, label="equilibrium structure (baseline)")
    ax[0].axhline(0.85, color="k", ls="--", lw=0.8, label="goal 0.85")
    ax[0].set_xlabel("atoms in the molecule (with H)")
    ax[0].set_ylabel("median heavy-atom RMSD / the equilibrium structure's")
    ax[0].set_title(f"(a) {len(rows)} held-out molecules, {probe} I_mol, Wigner 300 K, 0.5 % noise")
    lo, hi = ax[0].get_ylim()
    ax[0].set_ylim(lo, hi + 0.3 * (hi - lo))       # room for the legend above the points
    ax[0].legend(fontsize=8, loc="upper center", ncol=2)
    groups = report["held_out"]["groups"]
    names = [g for g in groups if groups[g].get("molecules")]
    x = np.arange(len(names))
    bars = [(m, c) for m, c in (("equilibrium", "0.6"), ("linear", "tab:orange"), ("network", "tab:green"),
                                ("general", "tab:blue")) if m in groups[names[0]]]
    wb = 0.8 / len(bars)
    for j, (m, c) in enumerate(bars):
        ax[1].bar(x + (j - (len(bars) - 1) / 2) * wb, [groups[g][m] for g in names], wb, color=c, label=m)
    ax[1].set_xticks(x, [f"{g} ({groups[g]['molecules']})" for g in names], fontsize=8, rotation=40, ha="right")
    ax[1].set_ylabel("median heavy-atom RMSD (Å)")
    ax[1].set_title("(b) by size and element (number of molecules)")
    ax[1].legend(fontsize=8)
    hot = report.get("hot") or []
    if hot:
        x = np.arange(len(hot))
        series = [(k, lab, c) for k, lab, c in (
            ("equilibrium", "equilibrium structure", "0.6"),
            ("general_wigner", "general, Wigner reader", "tab:blue"),
            ("general", "general, MD reader", "tab:cyan"),
            ("general_search", "general, MD reader + search", "tab:purple"),
            ("pool_fitting", f"pool fitting ({hot[0]['pool']:,} members)", "tab:red")) if k in hot[0]]
        wb = 0.8 / len(series)
        for j, (key, lab, c) in enumerate(series):
            ax[2].bar(x + (j - (len(series) - 1) / 2) * wb, [h[key] for h in hot], wb, color=c, label=lab)
        ax[2].hlines([0.75 * h["equilibrium"] for h in hot], x - 0.4, x + 0.4, colors="k", linestyles="--", lw=1,
                     label="goal: 0.75 × the equilibrium structure's")
        wrap = lambda t, n=16: "\n".join(t[i:i + n] for i in range(0, len(t), n))   # noqa: E731
        ax[2].set_xticks(x, [f"{wrap(h['smiles'])}\n({h['n_atoms']} atoms)" for h in hot], fontsize=7)
        ax[2].set_ylabel("median heavy-atom RMSD (Å)")
        ax[2].set_title(f"(c) hot samples: Langevin MD at 1500 K, {probe}, 0.5 % noise")
        ax[2].legend(fontsize=8)
    ident = report.get("identification")
    if ident:
        labels = {"ensemble_likelihood": "likelihood under each candidate's thermal ensemble",
                  "equilibrium_chi2": "χ² to each candidate's equilibrium pattern"}
        for m, c in (("ensemble_likelihood", "tab:blue"), ("equilibrium_chi2", "0.4")):
            lv = sorted(ident["top1"][m], key=float)
            ax[3].plot([100 * float(v) for v in lv], [100 * ident["top1"][m][v] for v in lv], "o-", c=c,
                       label=labels[m])
        ax[3].axhline(95, color="k", ls="--", lw=0.8, label="goal 95 %")
        ax[3].set_xscale("log")
        ticks = sorted(100 * float(v) for v in ident["top1"]["ensemble_likelihood"])
        ax[3].xaxis.set_major_locator(FixedLocator(ticks))
        ax[3].xaxis.set_minor_locator(NullLocator())
        ax[3].set_xticklabels([f"{t:g}" for t in ticks])
        ax[3].set_ylim(0, 101)
        ax[3].set_xlabel("relative noise per q point (%)")
        ax[3].set_ylabel("top-1 accuracy (%)")
        ax[3].set_title(f"(d) identification among isomers ({ident['n_formulas']} formulas, {probe})")
        ax[3].legend(fontsize=8, loc="lower left")
    for a, part in ((ax[2], hot), (ax[3], ident)):
        if not part:
            a.set_axis_off()
            a.text(0.5, 0.5, "not measured in this run (see --parts)", ha="center", va="center", color="0.4",
                   transform=a.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plot_frontier(report, path):
    """The trade between accuracy and speed (``goals.frontier``): the held-out median ratio and the ceiling ratio
    against batched patterns/s at the median-size molecule (the median of the timings, bars: their range), one
    point per cap on the calibrated iterations and one for the default."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    speed = report.get("speed") or []
    front = [f for f in report["goals"]["frontier"] if f["patterns_per_s"]]

    def rate_range(f):
        r = speed[0].get("patterns_per_s_range" + speed_tag(f["iterations"]))
        return (f["patterns_per_s"][0] - r[0], r[1] - f["patterns_per_s"][0]) if r else (0.0, 0.0)

    fig, ax = plt.subplots(1, 2, figsize=(12, 4.6))
    panels = (("median_ratio", "median RMSD ratio to the equilibrium structure",
               f"(a) {report['goals']['held_out_molecules']} held-out molecules (heavy atoms)", 0.85, "goal ≤ 0.85",
               "center left"),
              ("ceiling_max_over_per_molecule", "RMSD ratio to the per-molecule Transformer (worst)",
               f"(b) against per-molecule models ({len(report.get('ceiling') or [])} held-out molecules)", 1.15,
               "goal ≤ 1.15 (within 15 %)", "lower right"))
    for a, (key, ylabel, title, goal, goal_label, where) in zip(ax, panels):
        pts = [f for f in front if f.get(key) is not None]
        if not pts:
            a.set_axis_off()
            a.text(0.5, 0.5, "not measured in this run (see --parts)", ha="center", va="center", color="0.4",
                   transform=a.transAxes)
            continue
        caps = sorted((f for f in pts if f["iterations"] is not None), key=lambda f: f["iterations"])
        default = [f for f in pts if f["iterations"] is None]
        for group, style, lab in ((caps, dict(fmt="o-", color="tab:blue"), "iterations capped at k"),
                                  (default, dict(fmt="*", color="tab:red", ms=14), "default (1 % gain rule)")):
            if group:
                a.errorbar([f["patterns_per_s"][0] for f in group], [f[key] for f in group],
                           xerr=np.array([rate_range(f) for f in group]).T, capsize=3, label=lab, **style)
        for f in caps:
            a.annotate(f"k = {f['iterations']}", (f["patterns_per_s"][0], f[key]), textcoords="offset points",
                       xytext=(6, 6), fontsize=8)
        y = [f[key] for f in pts]
        a.axhline(goal, color="k", ls="--", lw=0.8, label=goal_label)
        a.axvline(5000, color="tab:red", ls=":", lw=1, label="goal ≥ 5,000 patterns/s")
        lo, hi = min(y), max(max(y), goal)
        a.set_ylim(lo - 0.1 * (hi - lo), hi + 0.15 * (hi - lo))
        a.set_xlim(0, 1.12 * max(max(f["patterns_per_s"][0] for f in pts), 5000))
        a.axhspan(a.get_ylim()[0], goal, xmin=5000 / a.get_xlim()[1], color="tab:green", alpha=0.08,
                  label="both goals met")
        a.set_xlabel(f"patterns/s, batched, {speed[0]['smiles']} ({speed[0]['n_atoms']} atoms, "
                     f"{speed[0]['threads']} threads)")
        a.set_ylabel(ylabel)
        a.set_title(title)
        a.legend(fontsize=8, loc=where)
    fig.suptitle(f"calibrated iterations: accuracy against speed ({report['machine']}, {report['date']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


PARTS = ("ceiling", "hot", "identification", "speed")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="general-xray", help="a pretrained name or a model directory")
    ap.add_argument("--json", help="write the report here")
    ap.add_argument("--plot", help="write the figure here (PNG)")
    ap.add_argument("--frontier-plot", help="write the accuracy-against-speed figure here (PNG; needs the speed part)")
    ap.add_argument("--work", default="general-bench", help="pools (kept; reruns reuse them)")
    ap.add_argument("--quick", action="store_true",
                    help="20 molecules, fewer samples, no ceiling models (≤ 10 min); explicit options still apply")
    sizes = {  # option: (full, quick)
        "molecules": (150, 20), "samples": (100, 40), "refine_n": (20, 10), "hot_molecules": (4, 1),
        "hot_pool": (4000, 500), "hot_trajectories": (10, 4), "hot_reference": (20000, 2000),
        "formulas": (24, 6), "id_samples": (2, 1),
        "speed_batch": (4096, 1024), "speed_single": (50, 20), "speed_repeats": (5, 1)}
    for name in sizes:
        ap.add_argument("--" + name.replace("_", "-"), type=int, help=f"default {sizes[name][0]} ({sizes[name][1]} "
                                                                      "with --quick)")
    ap.add_argument("--refine-steps", type=int, default=40)
    ap.add_argument("--hot-search", type=int, default=32,
                    help="starts of the hot samples' multi-start search (predict(search=...)); 0: not run")
    ap.add_argument("--ceiling-pool", type=int, default=20000)
    ap.add_argument("--ceiling-epochs", type=int, default=30)
    ap.add_argument("--ceiling-minutes", type=float, default=4.0)
    ap.add_argument("--max-isomers", type=int, default=6)
    ap.add_argument("--id-noise", type=float, nargs="+", default=[0.005, 0.01, 0.02, 0.05])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS),
                    help="what to measure (default all; the held-out molecules are always scored)")
    args = ap.parse_args(argv)
    for name, (full, quick) in sizes.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    import torch

    from xstructure.learn.general import PRETRAINED, GeneralInterpreter, pretrained

    torch.set_num_threads(2)
    model = pretrained(args.model) if args.model in PRETRAINED else GeneralInterpreter.load(args.model)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    report = dict(machine=f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
                  date=time.strftime("%Y-%m-%d"), model=repr(model), quick=bool(args.quick),
                  settings=dict(q="0.5-10 1/A, 200 points", probe=model.config["probe"], signal="molecular",
                                noise="0.5 % relative", temperature_K=300, samples_per_molecule=args.samples))
    print("held-out molecules:", flush=True)
    report["held_out"] = held_out(model, args, rng)
    report["held_out_smiles"] = [r["smiles"] for r in report["held_out"]["molecules"]]
    m = report["held_out"]["methods"]
    print(json.dumps({k: {kk: round(vv, 4) for kk, vv in v.items()} for k, v in m.items()}, indent=1), flush=True)
    if not args.quick and "ceiling" in args.parts:
        print("ceiling (per-molecule Transformers):", flush=True)
        report["ceiling"] = ceiling(model, report["held_out"], args, rng)
    if "hot" in args.parts:
        print("hot pools:", flush=True)
        model.config["md_reference"] = args.hot_reference   # frames of the MD reader's reference ensemble
        report["hot"] = hot(model, report["held_out"], args, rng)
    if "identification" in args.parts:
        print("identification:", flush=True)
        report["identification"] = identification(model, args, rng)
        print(json.dumps(report["identification"]["top1"], indent=1), flush=True)
    if "speed" in args.parts:
        print("speed:", flush=True)
        report["speed"] = speed(model, report["held_out"], args)
    g = m["general"]
    hot_rows = report.get("hot") or []
    report["goals"] = dict(
        median_ratio=g["ratio_to_equilibrium"], median_ratio_goal=0.85,
        below_baseline=report["held_out"]["fraction_of_molecules_below_baseline"]["general"], below_goal=0.8,
        held_out_molecules=len(report["held_out"]["molecules"]),
        identification_top1_at_1pc=(report["identification"]["top1"]["ensemble_likelihood"].get("0.01")
                                    if "identification" in report else None),
        ceiling_within_15pc=(all(c["general_over_per_molecule"] <= 1.15 for c in report["ceiling"])
                             if "ceiling" in report else None),
        # the model at the sample's temperature, with its Wigner (harmonic) reader and with the MD reader
        hot_below_pool_fitting=all(h["general_wigner"] < h["pool_fitting"] for h in hot_rows) if hot_rows else None,
        hot_ratio_max=max((h["general_wigner"] / h["equilibrium"] for h in hot_rows), default=None),
        hot_md_reader_below_pool_fitting=(all(h["general"] < h["pool_fitting"] for h in hot_rows)
                                          if hot_rows else None),
        hot_md_reader_ratio_max=max((h["general_ratio"] for h in hot_rows), default=None),
        hot_search_below_pool_fitting=(all(h["general_search"] < h["pool_fitting"] for h in hot_rows)
                                       if hot_rows and "general_search" in hot_rows[0] else None),
        hot_search_ratio_max=max((h["general_search_ratio"] for h in hot_rows if "general_search_ratio" in h),
                                 default=None),
        patterns_per_s=[r["patterns_per_s"] for r in report.get("speed", [])],
        single_ms=[r["single_ms_median"] for r in report.get("speed", [])],
        patterns_per_s_network=[r["patterns_per_s_network"] for r in report.get("speed", [])],
        single_ms_network=[r["single_ms_median_network"] for r in report.get("speed", [])],
        # the trade between accuracy and speed: the iterations capped at k (0: the network alone; None: the default)
        frontier=[dict(iterations=it, median_ratio=m[name]["ratio_to_equilibrium"],
                       below_baseline=report["held_out"]["fraction_of_molecules_below_baseline"].get(name),
                       ceiling_max_over_per_molecule=(max(c[key] for c in report["ceiling"])
                                                      if "ceiling" in report else None),
                       patterns_per_s=[r["patterns_per_s" + speed_tag(it)] for r in report.get("speed", [])],
                       single_ms=[r["single_ms_median" + speed_tag(it)] for r in report.get("speed", [])])
                  for it, name, key in ((0, "network", "network_over_per_molecule"),
                                        *((k, capped(k), f"general_{k}_over_per_molecule") for k in FRONTIER),
                                        (None, "general", "general_over_per_molecule"))])
    report["seconds"] = time.perf_counter() - t0
    print(json.dumps(report["goals"], indent=1), flush=True)
    print(f"total {report['seconds'] / 60:.1f} min", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)
    if args.plot:
        plot(report, args.plot)
    if args.frontier_plot and report.get("speed"):
        plot_frontier(report, args.frontier_plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
