"""``xstructure train``, ``evaluate`` and ``predict``: inversion models for molecules and crystals."""

from __future__ import annotations

import argparse

from ..learn.tasks import CRYSTAL_MODELS, MOLECULE_MODELS, evaluate_model, predict_file, train_store
from .args import add_progress, interrupted, output_file, output_path, parse_noise, parse_q, progress


def run_train(args) -> int:
    """``xstructure train`` with the parsed ``args``; returns the exit status."""
    try:
        model, what = train_store(
            args.pools, args.out, model=args.model, task=args.task, pattern_set=args.pattern_set, limit=args.limit,
            seed=args.seed, epochs=args.epochs, batch=args.batch, lr=args.lr, width=args.width, layers=args.layers,
            patience=args.patience, noise=args.noise, max_minutes=args.max_minutes, resume=not args.restart,
            progress=progress(args), chi_bins=args.chi_bins, energy_kev=args.energy, p2=args.p2,
            w_phys=args.w_phys, n_test=args.n_test, n_val=args.n_val)
    except KeyboardInterrupt:
        return interrupted(args.out, "finished epochs")
    print(f"model {args.out}: {model} for {what}")
    return 0


def run_evaluate(args) -> int:
    """``xstructure evaluate`` with the parsed ``args``; returns the exit status."""
    print(evaluate_model(args.model, args.pool, noise=args.noise, n_test=args.n_test, refine_steps=args.refine_steps,
                         seed=args.seed, pattern_set=args.pattern_set, flip=args.flip, json_path=args.json,
                         plot=args.plot, progress=progress(args)))
    for path, what in ((args.json, ""), (args.plot, "plot ")):
        if path:
            print(f"wrote {what}{path}")
    return 0


def run_predict(args) -> int:
    """``xstructure predict`` with the parsed ``args``; returns the exit status."""
    print(predict_file(args.model, args.pattern, args.out, molecule=args.molecule, formula=args.formula,
                       cell=args.cell, cif=args.cif, q=args.q, signal=args.signal, noise=args.noise_level,
                       temperature=args.temperature, refine_steps=args.refine_steps, iterations=args.iterations,
                       ensemble=args.ensemble, search=args.search))
    return 0


def add_parsers(sub) -> None:
    """Add the ``train``, ``evaluate`` and ``predict`` commands to ``sub`` (see :func:`xstructure.cli.build_parser`)."""
    t = sub.add_parser("train", help="train an inversion model (pattern -> structure) on pools",
                       description="Train a model on one pool, or one model on several pools of different "
                                   "molecules.  Checkpoints (safetensors + JSON) go to --out after every epoch; "
                                   "running the same command again resumes.")
    t.add_argument("pools", nargs="+", metavar="POOL",
                   help="pool stores (xstructure pool create) or one crystal set (xstructure crystals create)")
    t.add_argument("--model", default=None, choices=list(MOLECULE_MODELS) + list(CRYSTAL_MODELS),
                   help="molecules: transformer (default), cnn_gru, detector_cnn (2D images of aligned molecules, "
                        "made from the pool's geometries); crystals: mlp (default), mlp_mse, unet, coord")
    t.add_argument("--chi-bins", type=int, default=8, help="detector_cnn: azimuth bins of the images (default 8)")
    t.add_argument("--energy", type=float, default=20.0, help="detector_cnn: X-ray photon energy in keV (default 20)")
    t.add_argument("--p2", type=float, default=0.4,
                   help="detector_cnn: alignment <P2> of the molecule's long axis along x (default 0.4)")
    t.add_argument("--task", default="auto", choices=["auto", "molecule", "crystal"],
                   help="auto (default): crystal for a crystal set (xstructure crystals create), else molecule")
    t.add_argument("--w-phys", type=float, default=0.0, help="crystals: weight of the |F| consistency loss (default 0)")
    t.add_argument("--n-test", type=int, default=500,
                   help="crystals: held-out test crystals (default 500; with --n-val, fewer than the set holds)")
    t.add_argument("--n-val", type=int, default=200, help="crystals: validation crystals (default 200)")
    t.add_argument("--out", required=True, type=output_path,
                   help="model directory (made if missing; the same command again resumes)")
    t.add_argument("--pattern-set", help="pattern set of the pools (default: their only one)")
    t.add_argument("--epochs", type=int, default=40, help="most passes over the training set (default 40)")
    t.add_argument("--batch", type=int, help="batch size (default 256 for molecules, 32 for crystals)")
    t.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default 1e-3)")
    t.add_argument("--width", type=int, default=64, help="model width, the token dimension (default 64)")
    t.add_argument("--layers", type=int, default=2, help="Transformer layers (default 2)")
    t.add_argument("--patience", type=int, default=8,
                   help="stop after this many epochs without a better validation loss (default 8)")
    t.add_argument("--noise", type=parse_noise, default="gaussian:0.005",
                   help="training noise: gaussian:LEVEL (relative per q point, per image pixel for detector_cnn), "
                        "poisson:COUNTS or none (default gaussian:0.005)")
    t.add_argument("--limit", type=int, help="use only this many members of each pool (default: all)")
    t.add_argument("--seed", type=int, default=0, help="seed of the split and the initial weights (default 0)")
    t.add_argument("--max-minutes", type=float, help="stop (resumably) after this many minutes (default: none)")
    t.add_argument("--restart", action="store_true", help="start over instead of resuming")
    add_progress(t)
    t.set_defaults(func=run_train)
    e = sub.add_parser("evaluate", help="score a model and the baselines on a pool's test split",
                       description="Median/mean heavy-atom RMSD, all-atom RMSD and accuracy at 0.05/0.1/0.2 Å of "
                                   "the model, the mean structure, pool fitting and ridge regression, and the best "
                                   "of them refined, on one noisy draw of the test patterns.")
    e.add_argument("model", help="model directory (xstructure train --out)")
    e.add_argument("pool", help="the pool (or crystal set) the model was trained on")
    e.add_argument("--pattern-set", help="pattern set of the pool (default: the model's)")
    e.add_argument("--noise", type=parse_noise, default="gaussian:0.005",
                   help="noise added to the test patterns: gaussian:LEVEL, poisson:COUNTS or none "
                        "(default gaussian:0.005)")
    e.add_argument("--n-test", type=int, help="score only this many test members (default: the whole test split)")
    e.add_argument("--refine-steps", type=int, default=40,
                   help="gradient steps of refinement through the Debye op (default 40)")
    e.add_argument("--seed", type=int, default=0, help="split seed: the model's training seed (default 0)")
    e.add_argument("--json", type=output_file, help="write the report here (JSON)")
    e.add_argument("--plot", type=output_file, help="write a figure here (PNG)")
    e.add_argument("--flip", action=argparse.BooleanOptionalAction, default=True,
                   help="crystals: also score charge flipping and atom models refined from it (default on)")
    add_progress(e)
    e.set_defaults(func=run_evaluate)
    r = sub.add_parser("predict", help="structures from patterns with a trained or shipped model",
                       description="Structures from patterns. MODEL is a directory of xstructure train, or a model "
                                   "shipped with the package: general-xray (X-ray) or general-electron (electron "
                                   "I_mol) reads any molecule of H, C, N, O, F, S, "
                                   "Cl with up to 30 atoms (give it with --molecule), on any q grid inside "
                                   "0.5-10 1/A.",
                       epilog="example: xstructure simulate CN1CCOCC1 --q 0.5:10:500 --signal molecular > p.csv && "
                              "xstructure predict general-xray p.csv --molecule CN1CCOCC1 --out s.xyz")
    r.add_argument("model", help="model directory (xstructure train --out), or general-xray or general-electron")
    r.add_argument("pattern", help=".npy (Q,) or (B, Q); .csv (q,I columns or one I column, as xstructure simulate "
                                   "--out writes); .h5 (I and q); for a "
                                   "detector_cnn model .npy or .h5 images (n_chi, Q) or (B, n_chi, Q) "
                                   "(xstructure.learn.detector.cake bins a detector frame)")
    r.add_argument("--molecule", help="which of the model's molecules (default: its only one); for general models "
                                      "the molecule itself: SMILES, a name or a structure file")
    r.add_argument("--q", type=parse_q, help="general models: the q grid START:STOP:POINTS in 1/A, when the file "
                                             "has no q column")
    r.add_argument("--signal", choices=["molecular", "total"],
                   help="general models: what the patterns are, when the file does not say (default molecular)")
    r.add_argument("--noise", dest="noise_level", type=float,
                   help="general models: relative noise per q point of the patterns, relative to the signal given "
                        "(default 0.005)")
    r.add_argument("--temperature", type=float, help="general models: the sample's temperature in K (default 300)")
    r.add_argument("--refine-steps", type=int, default=0,
                   help="general models: refine through the Debye op with bond restraints (default 0)")
    r.add_argument("--iterations", type=int,
                   help="general models: calibrated Gauss-Newton iterations after the network (default: those that "
                        "each gained at least 1 %% on the molecule's own validation draws; 8: all that helped, the "
                        "most accurate; 0: the network alone, fastest)")
    r.add_argument("--ensemble", choices=["wigner", "md"],
                   help="general models: the reader's thermal ensemble, harmonic (wigner, default) or Langevin MD at "
                        "--temperature (md: for hot samples, about 2.5 minutes per new molecule)")
    r.add_argument("--search", type=int, default=0,
                   help="general models, hot samples: starts of the multi-start search per pattern (e.g. 32; used "
                        "only where it beats the prediction on the molecule's own draws; default 0, none)")
    r.add_argument("--formula", help="crystals (coord model, --cif): the composition, e.g. NaCl or Al2O3")
    r.add_argument("--cell", help="crystals (--cif): the cell as a,b,c,alpha,beta,gamma (Å, degrees); default: the "
                                  "cell in the .npz of xstructure crystal --hkl-grid")
    r.add_argument("--cif", type=output_file,
                   help="crystals: also solve for atoms (charge flipping from the model's phases, atoms "
                        "refined against the |F|² box) and write them here; --out gets their densities. "
                        "The atom count comes from F(000) = sqrt(|F(000)|²), so the box must be on the "
                        "absolute scale (electrons², atoms of Z electrons and the model's B)")
    r.add_argument("--out", required=True, type=output_file,
                   help="structure file (any format ase writes: .xyz, .pdb, ...); for a crystal model a .npy of "
                        "densities")
    r.set_defaults(func=run_predict)


