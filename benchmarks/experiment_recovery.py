"""Recovery against dose: how well the time-resolved layer finds a known answer as the signal grows.

Scenario
    1,3-cyclohexadiene (CHD, ``xstructure.molecule("CHD")``) opens to Z-1,3,5-hexatriene in its cZt conformer,
    a fraction f = 0.12 of the molecules, with a Gaussian rise of σ = 80 fs at t0 = +40 fs
    (:func:`xstructure.experiment.simulate_pumpprobe`): shot-to-shot intensity fluctuation of 20 % (gamma),
    100 fs rms timing jitter measured by a timetool to 10 fs, 0.1 % of the shots spiked, laser on and off
    alternating, nominal delays from −500 to +1000 fs (20 fs steps from −200 to +400 fs, 50 fs outside).
    Two probes: 3.7 MeV electrons (MeV-UED, q = 0.5–12 Å⁻¹) and 9.5 keV X-rays (λ = 1.305 Å, q ≤ 4π/λ =
    9.63 Å⁻¹; q = 0.5–8 Å⁻¹, 2θ ≤ 112°), 300 q points each.  The dose is the package's: the expected number of
    scattered electrons or photons per shot summed over the q grid (for the reactant and a shot of mean
    intensity), log-spaced from barely visible to clean.

Analysis (what a user would do, nothing taken from the answer)
    1. ``run.reduce()`` with its defaults: 50 equal-count delay bins of the timetool-corrected delays, each shot
       normalised by its sum over the whole q grid (``normalize="window"``), outliers rejected at 5 σ̂ (MAD)
       on more than 2 % of the q points, each laser-on shot referenced to its 4 nearest laser-off shots, 100
       block-bootstrap resamples.
    2. The candidates are ranked on the mean ΔI/I of the bins after +400 fs (``fit_fraction`` told the window,
       ``normalize="window"``); the best one's fitted ΔI/I is the template of the onset fit (``fit_onset``,
       erf step with offset).
    3. The late ΔI/I, the mean of the bins after t0 + 4 σ of that fit (kept within 0–400 fs), is fitted again:
       the excitation fraction of the best candidate and the rank of the true product among nine C6H8
       structures (the three Z-hexatriene conformers cZc, cZt, tZt, E-hexatriene tEt, 1,4-cyclohexadiene, 1- and
       5-methylcyclopenta-1,3-diene, 3-methylenecyclopentene, bicyclo[3.1.0]hex-2-ene).
    4. ΔsM and ΔPDF (damping 0.03 Å², r = 0.5–7 Å) of the late ΔI/I, after removing the offset that window
       normalisation leaves, −f β (see the user guide), with the f and β of the best candidate; the Pearson
       correlation with the ΔPDF of the true structures on the same q grid with the same damping.  The
       correlation without that correction is reported too.

Goals at the clean end: |t0 error| ≤ 10 fs, |width error| ≤ 20 %, |fraction error| ≤ 5 %, the true product
ranked first, ΔPDF correlation ≥ 0.98.

Usage: ``python benchmarks/experiment_recovery.py [--quick] [--out DIR] [--markdown]``: 50 000 shots per run,
doses 10², 3·10², ..., 10⁵, five independent runs per dose, both probes; writes experiment_recovery.json and four
PNGs to DIR (default docs/figures).  --quick: 10 000 shots, doses 10³, 10⁴, 10⁵, one run each, nothing written
unless --out is given.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

if __name__ == "__main__":     # the bootstrap's small matrix products: no BLAS threads competing with the workers
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info

import xstructure
from xstructure.experiment import (
    delta_pdf,
    delta_sm,
    fit_fraction,
    fit_onset,
    iam_patterns,
    simulate_pumpprobe,
    theoretical_difference,
)

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ROOT / "docs" / "figures"

#: The true parameters of the scenario.
FRACTION, T0, WIDTH = 0.12, 40.0, 80.0
NOISE = {"fluctuation": 0.2, "jitter": 100.0, "timetool_error": 10.0, "monitor_error": 0.01, "outliers": 0.001}
DELAYS = np.concatenate([np.arange(-500, -200, 50), np.arange(-200, 400, 20), np.arange(400, 1001, 50)])
X_RAY_KEV = 9.5
PROBES = {
    "electron": {"probe": "electron", "energy_kev": 3700.0, "q": np.linspace(0.5, 12.0, 300),
                 "label": "electrons, 3.7 MeV"},
    "xray": {"probe": "xray", "energy_kev": None, "q": np.linspace(0.5, 8.0, 300), "label": "X-rays, 9.5 keV"},
}
R = np.linspace(0.5, 7.0, 261)                 # Å
DAMPING = 0.03                                 # Å²
T_LATE = 400.0                                 # fs: bins after it rank the candidates for the onset template
GOALS = {"t0_fs": 10.0, "width_rel": 0.20, "fraction_rel": 0.05, "rank": 1, "pdf_corr": 0.98}
TRUE_PRODUCT = "cZt"
HEXATRIENE_DIHEDRALS = {"cZc": (0.0, 0.0), "cZt": (0.0, 180.0), "tZt": (180.0, 180.0)}
OTHER_ISOMERS = {
    "tEt": "C=C/C=C/C=C",                      # E-1,3,5-hexatriene
    "1,4-CHD": "C1=CCC=CC1",                   # cyclohexa-1,4-diene
    "1-Me-CPD": "CC1=CC=CC1",                  # 1-methylcyclopenta-1,3-diene
    "5-Me-CPD": "CC1C=CC=C1",                  # 5-methylcyclopenta-1,3-diene
    "3-MCP": "C=C1C=CCC1",                     # 3-methylenecyclopentene
    "BCH": "C1=CC2CC2C1",                      # bicyclo[3.1.0]hex-2-ene
}


# ---- structures --------------------------------------------------------------------------------------------------

def _mmff_atoms(mol):
    import ase
    from rdkit.Chem import AllChem

    props = AllChem.MMFFGetMoleculeProperties(mol)
    ff = AllChem.MMFFGetMoleculeForceField(mol, props)
    if ff.Minimize(maxIts=100000) != 0:
        raise RuntimeError("MMFF94 minimisation did not converge")
    return ase.Atoms(numbers=[a.GetAtomicNum() for a in mol.GetAtoms()], positions=mol.GetConformer().GetPositions())


def hexatriene(d1: float, d2: float):
    """Z-1,3,5-hexatriene with the C1=C2–C3=C4 and C3=C4–C5=C6 dihedrals set to d1 and d2 (0: s-cis, 180: s-trans),
    then MMFF94-minimised without constraints (cZc and cZt relax to their non-planar minima)."""
    from rdkit import Chem
    from rdkit.Chem import AllChem, rdMolTransforms

    mol = Chem.AddHs(Chem.MolFromSmiles("C=C/C=C\\C=C"))
    if AllChem.EmbedMolecule(mol, randomSeed=7) != 0:
        raise RuntimeError("RDKit could not embed Z-hexatriene")
    conf = mol.GetConformer()
    rdMolTransforms.SetDihedralDeg(conf, 0, 1, 2, 3, d1)
    rdMolTransforms.SetDihedralDeg(conf, 2, 3, 4, 5, d2)
    atoms = _mmff_atoms(mol)
    atoms.info["dihedrals"] = [rdMolTransforms.GetDihedralDeg(conf, *ix) for ix in ((0, 1, 2, 3), (1, 2, 3, 4),
                                                                                     (2, 3, 4, 5))]
    return atoms


def isomer(smiles: str):
    """A C6H8 isomer from SMILES: RDKit embedding and MMFF94 minimisation; the formula is checked."""
    from rdkit import Chem
    from rdkit.Chem import AllChem
    from rdkit.Chem.rdMolDescriptors import CalcMolFormula

    mol = Chem.MolFromSmiles(smiles)
    if mol is None or CalcMolFormula(mol) != "C6H8":
        raise ValueError(f"{smiles!r} is not a C6H8 SMILES")
    mol = Chem.AddHs(mol)
    if AllChem.EmbedMolecule(mol, randomSeed=7) != 0:
        raise RuntimeError(f"RDKit could not embed {smiles!r}")
    return _mmff_atoms(mol)


def structures():
    """The reactant and the candidate products (the true product among them), as ase.Atoms."""
    cands = {name: hexatriene(*d) for name, d in HEXATRIENE_DIHEDRALS.items()}
    cands.update({name: isomer(s) for name, s in OTHER_ISOMERS.items()})
    return xstructure.molecule("CHD"), cands


class Setup:
    """The structures and their patterns on one probe's q grid, computed once."""

    def __init__(self, probe: str, reactant, candidates):
        p = PROBES[probe]
        self.name, self.probe, self.energy_kev, self.q = probe, p["probe"], p["energy_kev"], p["q"]
        if self.probe == "xray":
            lam = 12.398419843320026 / X_RAY_KEV               # Å
            assert self.q[-1] < 4 * np.pi / lam, "q beyond the X-ray's reach"
        self.reactant, self.candidates = reactant, candidates
        self.labels = list(candidates)
        self.true_index = self.labels.index(TRUE_PRODUCT)
        self.i_reactant = iam_patterns(reactant, self.q, self.probe, self.energy_kev)[0]
        self.patterns = [iam_patterns(a, self.q, self.probe, self.energy_kev)[0] for a in candidates.values()]
        self.true_pdf = theoretical_difference(reactant, candidates[TRUE_PRODUCT], self.q, probe=self.probe,
                                               energy_kev=self.energy_kev, fraction=FRACTION, r=R,
                                               damping=DAMPING).pdf

    def simulate(self, dose: float, shots: int, seed: int):
        return simulate_pumpprobe(self.reactant, self.candidates[TRUE_PRODUCT], self.q, DELAYS, shots, FRACTION,
                                  T0, WIDTH, dose, probe=self.probe, energy_kev=self.energy_kev, seed=seed, **NOISE)


# ---- one run -----------------------------------------------------------------------------------------------------

def analyse(setup: Setup, run, num_threads: int | None = 1) -> dict:
    """Reduce a run with the defaults and measure what it recovers (steps 1-4 of the module docstring).

    Returns the recovered numbers, their errors against the truth, and the ΔPDF (``pdf``, on ``R``)."""
    q, norm = setup.q, "window"                      # the reduction's default normalisation
    red = run.reduce(num_threads=num_threads)
    late0, s0 = red.average(T_LATE)
    first = fit_fraction(q, late0, setup.i_reactant, setup.patterns, sigma=s0, normalize=norm)
    onset = fit_onset(red, template=first[0].model)
    t_late = float(np.clip(onset.t0 + 4 * onset.width, 0.0, T_LATE))
    late, s_late = red.average(t_late)
    ranked = fit_fraction(q, late, setup.i_reactant, setup.patterns, sigma=s_late, normalize=norm)
    order = [r.index for r in ranked]
    best = ranked[0]
    true_fit = ranked[order.index(setup.true_index)]
    others = [r for r in ranked if r.index != setup.true_index]
    plain = fit_fraction(q, late, setup.i_reactant, [setup.patterns[setup.true_index]], sigma=s_late)[0]
    i_best = setup.patterns[best.index]
    beta = float((i_best - setup.i_reactant).sum() / setup.i_reactant.sum())     # the window: the whole grid
    corrected = (1.0 + late) * (1.0 + best.fraction * beta) - 1.0                   # undo (1 + f b)/(1 + f β) − 1
    pdf = delta_pdf(q, delta_sm(q, corrected, setup.reactant, setup.probe, setup.energy_kev), R, damping=DAMPING)
    pdf_raw = delta_pdf(q, delta_sm(q, late, setup.reactant, setup.probe, setup.energy_kev), R, damping=DAMPING)
    return {
        "t0_fs": onset.t0, "t0_sigma_fs": onset.t0_err, "width_fs": onset.width, "width_sigma_fs": onset.width_err,
        "amplitude_over_sigma": abs(onset.amplitude) / onset.amplitude_err if onset.amplitude_err > 0 else None,
        "t0_error_fs": onset.t0 - T0, "width_rel_error": onset.width / WIDTH - 1,
        "best": setup.labels[best.index], "fraction": best.fraction, "fraction_sigma": best.fraction_err,
        "fraction_rel_error": best.fraction / FRACTION - 1,
        "fraction_rel_error_true_product": true_fit.fraction / FRACTION - 1,
        "fraction_rel_error_without_window_model": plain.fraction / FRACTION - 1,
        "rank": order.index(setup.true_index) + 1,
        "chi2_per_dof_true": true_fit.reduced_chi2, "chi2_per_dof_runner_up": others[0].reduced_chi2,
        "runner_up": setup.labels[others[0].index],
        "pdf_corr": float(np.corrcoef(pdf, setup.true_pdf)[0, 1]),
        "pdf_corr_uncorrected": float(np.corrcoef(pdf_raw, setup.true_pdf)[0, 1]),
        "t_late_fs": t_late, "bins": int(red.delay.size), "rejected": int(red.rejected["total"]),
        "pdf": pdf,
    }


def meets_goals(r: dict) -> dict:
    """Which goals one run meets."""
    return {"t0": abs(r["t0_error_fs"]) <= GOALS["t0_fs"], "width": abs(r["width_rel_error"]) <= GOALS["width_rel"],
            "fraction": abs(r["fraction_rel_error"]) <= GOALS["fraction_rel"], "rank": r["rank"] == GOALS["rank"],
            "pdf_corr": r["pdf_corr"] >= GOALS["pdf_corr"]}


def recover(probe: str, dose: float, shots: int, seed: int = 0, setup: Setup | None = None,
            num_threads: int | None = 1) -> dict:
    """Simulate one run of the scenario and analyse it (the core of the study, for one probe and dose)."""
    if setup is None:
        setup = Setup(probe, *structures())
    run, truth = setup.simulate(dose, shots, seed)
    out = analyse(setup, run, num_threads)
    out["spiked"] = int(truth.outliers.size)
    return out


# ---- the study ---------------------------------------------------------------------------------------------------

METRICS = ("t0_error_fs", "width_rel_error", "fraction_rel_error", "fraction_rel_error_without_window_model",
           "rank", "pdf_corr", "pdf_corr_uncorrected", "t0_sigma_fs", "width_sigma_fs", "fraction_sigma",
           "amplitude_over_sigma", "chi2_per_dof_true", "chi2_per_dof_runner_up", "rejected", "spiked")


def study(probes, doses, shots: int, repeats: int, num_threads: int | None = 1, log=print) -> dict:
    """Every probe × dose × repeat: the numbers of each run and their mean and spread per dose."""
    import warnings

    reactant, candidates = structures()
    res = {"scenario": scenario(shots, doses, repeats, candidates), "probes": {}}
    for kp, probe in enumerate(probes):
        setup = Setup(probe, reactant, candidates)
        rows = []
        for kd, dose in enumerate(doses):
            runs = []
            for rep in range(repeats):
                t = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)    # bins dropped or ΔI/I not finite at low dose
                    try:
                        r = recover(probe, dose, shots, seed=10000 * kp + 100 * kd + rep, setup=setup,
                                    num_threads=num_threads)
                    except (ValueError, RuntimeError) as err:
                        r = {"failed": f"{type(err).__name__}: {err}"}
                r["time_s"] = time.perf_counter() - t
                runs.append(r)
            rows.append(summarise(dose, runs))
            log(f"{probe:8s} dose {dose:8.3g}: " + ("failed: " + "; ".join(rows[-1]["failures"])
                                                     if not rows[-1]["n_ok"] else
                f"t0 {rows[-1]['t0_error_fs']['mean']:+7.1f} fs  width {100 * rows[-1]['width_rel_error']['mean']:+6.1f} %"
                f"  f {100 * rows[-1]['fraction_rel_error']['mean']:+6.1f} %  rank {rows[-1]['rank']['mean']:.1f}"
                f"  r {rows[-1]['pdf_corr']['mean']:.4f}") + f"  ({sum(x['time_s'] for x in runs):.1f} s)")
        res["probes"][probe] = {"label": PROBES[probe]["label"], "q_min": float(setup.q[0]),
                                "q_max": float(setup.q[-1]), "q_points": int(setup.q.size),
                                "candidates": setup.labels, "true_pdf": setup.true_pdf, "doses": rows}
        res["probes"][probe].update(verdict(rows))
    return res


def summarise(dose: float, runs: list) -> dict:
    ok = [r for r in runs if "failed" not in r]
    row = {"dose": dose, "n_runs": len(runs), "n_ok": len(ok), "runs": runs,
           "failures": sorted({r["failed"] for r in runs if "failed" in r})}
    for m in METRICS:
        v = np.array([r[m] for r in ok if r.get(m) is not None], dtype=float)
        row[m] = ({"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
                   "rms": float(np.sqrt(np.mean(v * v))), "min": float(v.min()), "max": float(v.max())}
                  if v.size else None)
    row["best"] = sorted({r["best"] for r in ok})
    if ok:
        P = np.array([r["pdf"] for r in ok])
        row["pdf_mean"], row["pdf_std"] = P.mean(axis=0), P.std(axis=0)
        goals = [meets_goals(r) for r in ok]
        row["goals_all_runs"] = {k: bool(len(ok) == len(runs) and all(g[k] for g in goals)) for k in goals[0]}
    else:
        row["goals_all_runs"] = dict.fromkeys(("t0", "width", "fraction", "rank", "pdf_corr"), False)
    return row


def verdict(rows: list) -> dict:
    """The goals at the clean end (the highest dose; met when every run meets it) and the lowest dose from which on
    every run meets each goal."""
    clean = rows[-1]["goals_all_runs"]
    lowest = {}
    for k in clean:
        d = None
        for row in reversed(rows):
            if not row["goals_all_runs"][k]:
                break
            d = row["dose"]
        lowest[k] = d
    return {"goals_at_clean_end": clean, "lowest_dose_meeting_goal": lowest}


def scenario(shots, doses, repeats, candidates) -> dict:
    return {"reactant": "CHD (1,3-cyclohexadiene)", "product": f"Z-1,3,5-hexatriene, {TRUE_PRODUCT}",
            "fraction": FRACTION, "t0_fs": T0, "width_fs": WIDTH, "noise": NOISE,
            "delays_fs": DELAYS.tolist(), "shots": shots, "doses": list(doses), "repeats": repeats,
            "dose_definition": "expected scattered counts per shot summed over the q grid (reactant, mean shot)",
            "reduction": "PumpProbe.reduce() defaults: 50 equal-count bins, normalize='window' (whole grid), "
                         "reject=5, reject_fraction=0.02, reference='nearest', n_nearest=4, bootstrap=100",
            "x_ray_kev": X_RAY_KEV, "electron_kev": PROBES["electron"]["energy_kev"],
            "r_A": [float(R[0]), float(R[-1]), int(R.size)], "damping_A2": DAMPING, "t_late_fs": T_LATE,
            "goals": GOALS,
            "dihedrals_deg": {k: [round(x, 1) for x in a.info["dihedrals"]] for k, a in candidates.items()
                              if "dihedrals" in a.info}}


def visible_dose(rows: list) -> float:
    """The barely visible end: the lowest dose at which every run gave a result."""
    return next(row["dose"] for row in rows if row["n_ok"] == row["n_runs"])


# ---- output ------------------------------------------------------------------------------------------------------

def _fmt(s, scale=1.0, digits=1, sign=True):
    if s is None:
        return "–"
    f = f"{{:{'+' if sign else ''}.{digits}f}}"
    return f"{f.format(scale * s['mean'])} ± {scale * s['std']:.{digits}f}"


def table(res: dict, markdown: bool = False) -> str:
    head = ["probe", "dose", "ok", "t0 error (fs)", "width error (%)", "fraction error (%)", "rank", "ΔPDF r",
            "rejected / spiked"]
    lines = []
    for p in res["probes"].values():
        for row in p["doses"]:
            if not row["n_ok"]:
                cells = [p["label"], f"{row['dose']:.0e}", f"0/{row['n_runs']}", "–", "–", "–", "–", "–", "–"]
            else:
                cells = [p["label"], f"{row['dose']:.0e}", f"{row['n_ok']}/{row['n_runs']}",
                         _fmt(row["t0_error_fs"]), _fmt(row["width_rel_error"], 100),
                         _fmt(row["fraction_rel_error"], 100, 2), _fmt(row["rank"], 1, 1, False),
                         _fmt(row["pdf_corr"], 1, 4, False),
                         f"{row['rejected']['mean']:.0f} / {row['spiked']['mean']:.0f}"]
            lines.append(cells)
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        out += ["| " + " | ".join(c) + " |" for c in lines]
        return "\n".join(out)
    w = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(head)]
    out = ["  ".join(h.ljust(w[i]) for i, h in enumerate(head))]
    out += ["  ".join(c[i].ljust(w[i]) for i in range(len(head))) for c in lines]
    return "\n".join(out)


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items() if k != "pdf"}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return [float(f"{v:.5g}") for v in x.ravel()]
    if isinstance(x, (np.integer, np.bool_)):
        return x.item()
    if isinstance(x, (float, np.floating)):
        return float(f"{x:.6g}")
    return x


def for_json(res: dict) -> dict:
    """The results without the per-dose mean ΔPDF curves other than the two that figure (d) draws."""
    out = dict(res, probes={})
    for probe, p in res["probes"].items():
        keep = {visible_dose(p["doses"]), p["doses"][-1]["dose"]}
        rows = [row if row["dose"] in keep else {k: v for k, v in row.items() if k not in ("pdf_mean", "pdf_std")}
                for row in p["doses"]]
        out["probes"][probe] = dict(p, doses=rows)
    out["r_A"] = R
    return _jsonable(out)


# ---- figures -----------------------------------------------------------------------------------------------------

STYLE = {"electron": {"color": "C0", "marker": "o"}, "xray": {"color": "C3", "marker": "s"}}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _series(p, key, transform=abs):
    """Per dose: the values of the runs (transformed), for the doses with results."""
    d, v = [], []
    for row in p["doses"]:
        for r in row["runs"]:
            if "failed" not in r and r.get(key) is not None:
                d.append(row["dose"])
                v.append(transform(r[key]))
    return np.array(d), np.array(v)


def _rms_line(p, key, scale=1.0):
    d, v = [], []
    for row in p["doses"]:
        if row["n_ok"] and row[key] is not None:
            d.append(row["dose"])
            v.append(scale * row[key]["rms"])
    return np.array(d), np.array(v)


def _failed(ax, p, y, style):
    d = [row["dose"] for row in p["doses"] if not row["n_ok"]]
    if d:
        ax.plot(d, [y] * len(d), ls="none", marker="x", ms=8, mew=2, color=style["color"], clip_on=False)


def _plain_log_ticks(ax):
    from matplotlib.ticker import FuncFormatter, LogLocator

    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def _error_panel(ax, res, key, scale, goal, unit, ylabel, floor, sigma=None, mark_failed=True):
    """|error| of each run (dots; below ``floor``: drawn at it) and the RMS over the runs per dose (line), log-log,
    the goal dashed; ``sigma``: a function of one run giving the fit's own standard error in the same unit (dotted:
    its median)."""
    for probe, p in res["probes"].items():
        st = STYLE[probe]
        d, v = _series(p, key, lambda x: abs(scale * x))
        ax.plot(d, np.maximum(v, floor), ls="none", marker=st["marker"], ms=3.5, alpha=0.35, color=st["color"])
        d, v = _rms_line(p, key, scale)
        ax.plot(d, np.maximum(v, floor), marker=st["marker"], color=st["color"], label=f"{p['label']}: RMS error")
        if sigma is not None:
            d = [row["dose"] for row in p["doses"] if row["n_ok"]]
            s = [np.median([sigma(r) for r in row["runs"] if "failed" not in r]) for row in p["doses"] if row["n_ok"]]
            ax.plot(d, s, ls=":", color=st["color"], label=f"{p['label']}: the fit's standard error (median)")
    ax.axhline(goal, ls="--", color="0.3", lw=1.2, label=f"goal: within {goal:g} {unit}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log_ticks(ax)
    ax.set_xlabel("dose (scattered counts per shot)")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="major", alpha=0.3)
    ax.set_ylim(bottom=floor)
    if mark_failed:
        top = ax.get_ylim()[1]
        for probe, p in res["probes"].items():
            _failed(ax, p, top, STYLE[probe])


def _any_failed(res) -> bool:
    return any(not row["n_ok"] for p in res["probes"].values() for row in p["doses"])


def _legend_extra(ax, failed: bool, run_label="one run (|error|)"):
    from matplotlib.lines import Line2D

    h, lab = ax.get_legend_handles_labels()
    h.append(Line2D([], [], ls="none", marker="o", ms=3.5, alpha=0.35, color="0.3"))
    lab.append(run_label)
    if failed:
        h.append(Line2D([], [], ls="none", marker="x", ms=8, mew=2, color="0.3"))
        lab.append("no result (every run failed)")
    return h, lab


def plot_timing(res, path):
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.0), layout="constrained")
    _error_panel(axes[0], res, "t0_error_fs", 1.0, GOALS["t0_fs"], "fs", "|t0 error| (fs)", 0.05,
                 lambda r: r["t0_sigma_fs"])
    _error_panel(axes[1], res, "width_rel_error", 100.0, 100 * GOALS["width_rel"], "%", "|width error| (%)", 0.05,
                 lambda r: 100 * r["width_sigma_fs"] / WIDTH)
    axes[0].set_title(f"(a) time zero (true t0 = {T0:g} fs)")
    axes[1].set_title(f"(a) instrument response σ (true σ = {WIDTH:g} fs)")
    for ax in axes:
        h, lab = _legend_extra(ax, _any_failed(res))
        ax.legend(h, lab, fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    fig.savefig(path, dpi=150)
    plt.close(fig)


def plot_fraction(res, path):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.0, 5.4), layout="constrained")
    _error_panel(ax, res, "fraction_rel_error", 100.0, 100 * GOALS["fraction_rel"], "%", "|fraction error| (%)",
                 0.02, lambda r: 100 * r["fraction_sigma"] / FRACTION, mark_failed=False)
    for probe, p in res["probes"].items():
        d, v = _rms_line(p, "fraction_rel_error_without_window_model", 100.0)
        ax.plot(d, v, ls="-.", lw=1, color=STYLE[probe]["color"],
                label=f"{p['label']}: fit not told the window normalisation (RMS)")
    top = ax.get_ylim()[1]
    for probe, p in res["probes"].items():
        _failed(ax, p, top, STYLE[probe])
    ax.set_title(f"(b) excitation fraction of the top-ranked product (true f = {FRACTION:g})", fontsize=10)
    h, lab = _legend_extra(ax, _any_failed(res))
    ax.legend(h, lab, fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    fig.savefig(path, dpi=150)
    plt.close(fig)


def plot_structure(res, path):
    from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.0), layout="constrained")
    failed = _any_failed(res)
    ax = axes[0]
    lo = 1e-4                                        # 1 − r is drawn on a log axis, r = 0.9999 at the bottom
    for probe, p in res["probes"].items():
        st = STYLE[probe]
        d, v = _series(p, "pdf_corr", lambda x: x)
        ax.plot(d, np.clip(1 - v, lo, 1), ls="none", marker=st["marker"], ms=3.5, alpha=0.35, color=st["color"])
        for key, ls, lab in (("pdf_corr", "-", "window offset removed (mean)"),
                             ("pdf_corr_uncorrected", "-.", "as reduced (mean)")):
            dm = [row["dose"] for row in p["doses"] if row["n_ok"]]
            vm = np.array([row[key]["mean"] for row in p["doses"] if row["n_ok"]])
            ax.plot(dm, np.clip(1 - vm, lo, 1), ls=ls, lw=1.5 if ls == "-" else 1,
                    marker=st["marker"] if ls == "-" else None, color=st["color"], label=f"{p['label']}: {lab}")
        _failed(ax, p, 1.0, st)
    ax.axhline(1 - GOALS["pdf_corr"], ls="--", color="0.3", lw=1.2, label=f"goal: r ≥ {GOALS['pdf_corr']:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = [1.0, 0.5, 0.1, 0.02, 1e-3, 1e-4]
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_major_formatter(FixedFormatter([f"{1 - t:g}" for t in ticks]))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.set_ylim(1.0, lo)
    ax.set_ylabel("ΔPDF correlation r with the truth (scale: 1 − r, log)")
    ax.set_xlabel("dose (scattered counts per shot)")
    ax.set_title("(c) ΔPDF of the late ΔI/I against the true ΔPDF", fontsize=10)
    ax.grid(True, alpha=0.3)
    h, lab = _legend_extra(ax, failed, "one run (offset removed)")
    ax.legend(h, lab, fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)

    ax = axes[1]
    n_c = len(next(iter(res["probes"].values()))["candidates"])
    for k, (probe, p) in enumerate(res["probes"].items()):
        st = STYLE[probe]
        shift = 1.0 + 0.05 * (2 * k - 1)             # the two probes side by side
        d, v = _series(p, "rank", lambda x: x)
        ax.plot(d * shift, v, ls="none", marker=st["marker"], ms=5, alpha=0.35, color=st["color"])
        dm = [row["dose"] * shift for row in p["doses"] if row["n_ok"]]
        vm = [row["rank"]["mean"] for row in p["doses"] if row["n_ok"]]
        ax.plot(dm, vm, marker=st["marker"], color=st["color"], label=f"{p['label']}: mean rank")
        _failed(ax, p, n_c + 0.5, st)
    ax.axhline(GOALS["rank"], ls="--", color="0.3", lw=1.2, label="goal: ranked first")
    ax.set_xscale("log")
    ax.set_ylim(n_c + 0.5, 0.5)
    ax.set_yticks(range(1, n_c + 1))
    ax.set_ylabel(f"rank of the true product ({TRUE_PRODUCT}) among {n_c} C$_6$H$_8$ structures")
    ax.set_xlabel("dose (scattered counts per shot)")
    ax.set_title("(c) which product: rank by χ² of the fraction fit", fontsize=10)
    ax.grid(True, alpha=0.3)
    h, lab = _legend_extra(ax, failed, "one run")
    ax.legend(h, lab, fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    fig.savefig(path, dpi=150)
    plt.close(fig)


def plot_pdf(res, path):
    plt = _pyplot()
    probes = list(res["probes"])
    fig, axes = plt.subplots(len(probes), 2, figsize=(11, 3.6 * len(probes)), layout="constrained",
                             squeeze=False)
    for i, probe in enumerate(probes):
        p = res["probes"][probe]
        low = visible_dose(p["doses"])
        for j, dose in enumerate((low, p["doses"][-1]["dose"])):
            row = next(rw for rw in p["doses"] if rw["dose"] == dose)
            ax = axes[i, j]
            ax.axhline(0, color="0.7", lw=0.8)
            ax.plot(R, p["true_pdf"], color="k", lw=1.5, label="true (same q grid and damping)")
            m, s = np.asarray(row["pdf_mean"]), np.asarray(row["pdf_std"])
            ax.plot(R, m, color=STYLE[probe]["color"], lw=1.3, label="measured" + (f", mean of {row['n_ok']} runs" if row["n_ok"] > 1 else ""))
            if row["n_ok"] > 1:
                ax.fill_between(R, m - s, m + s, color=STYLE[probe]["color"], alpha=0.25, lw=0,
                                label="± standard deviation over the runs")
            which = "barely visible" if j == 0 else "clean"
            ax.set_title(f"(d) {p['label']}, dose {dose:.0e} ({which}), mean r = {row['pdf_corr']['mean']:.4f}",
                         fontsize=10)
            ax.set_xlabel("r (Å)")
            ax.set_ylabel("ΔPDF (Å$^{-2}$)")
            ax.set_xlim(R[0], R[-1])
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7.5, loc="lower right")
    fig.savefig(path, dpi=150)
    plt.close(fig)


FIGURE_NAMES = {"timing": "experiment_recovery_timing.png", "fraction": "experiment_recovery_fraction.png",
                "structure": "experiment_recovery_structure.png", "pdf": "experiment_recovery_pdf.png"}


def figures(res, out: Path) -> list:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for key, fn in (("timing", plot_timing), ("fraction", plot_fraction), ("structure", plot_structure),
                    ("pdf", plot_pdf)):
        fn(res, out / FIGURE_NAMES[key])
        paths.append(out / FIGURE_NAMES[key])
    return paths


# ---- main --------------------------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="10 000 shots, doses 1e3, 1e4, 1e5, one repeat (< 1 min)")
    ap.add_argument("--probes", nargs="+", choices=list(PROBES), default=list(PROBES))
    ap.add_argument("--shots", type=int, help="shots per run (default 50 000; --quick 10 000)")
    ap.add_argument("--repeats", type=int, help="independent runs per dose (default 5; --quick 1)")
    ap.add_argument("--threads", type=int, default=1, help="worker threads of the reduction (default 1)")
    ap.add_argument("--out", type=Path, help="folder for the JSON and the PNGs (default docs/figures; with --quick "
                                             "nothing is written unless --out is given)")
    ap.add_argument("--markdown", action="store_true", help="print the table in Markdown too")
    args = ap.parse_args(argv)
    doses = [1e3, 1e4, 1e5] if args.quick else [1e2, 3e2, 1e3, 3e3, 1e4, 3e4, 1e5]
    shots = args.shots or (10000 if args.quick else 50000)
    repeats = args.repeats or (1 if args.quick else 5)
    out = args.out if args.out is not None else (None if args.quick else FIGURES)
    t = time.perf_counter()
    res = study(args.probes, doses, shots, repeats, args.threads)
    res["wall_time_s"] = time.perf_counter() - t
    res["machine"] = machine_info()
    print()
    print(table(res))
    if args.markdown:
        print()
        print(table(res, markdown=True))
    for p in res["probes"].values():
        print(f"{p['label']}: goals at the clean end {p['goals_at_clean_end']}; "
              f"lowest dose meeting each {p['lowest_dose_meeting_goal']}")
    print(f"wall time {res['wall_time_s']:.0f} s")
    if out is not None:
        for path in figures(res, out):
            print(f"wrote {path}")
        path = out / f"experiment_recovery{'_quick' if args.quick else ''}.json"
        path.write_text(json.dumps(for_json(res), indent=1))
        print(f"wrote {path}")
    return res


if __name__ == "__main__":
    main()
