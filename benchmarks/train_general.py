"""Train a general interpreter (``xstructure.learn.pretrained("general-xray")`` or ``"general-electron"``) from
scratch.

Steps, each timed and resumable (pools and features are kept under --work):

1. the molecule library (:func:`xstructure.learn.library.build_library`), split by Bemis–Murcko scaffold;
2. a 300 K Wigner pool with patterns of the probe (X-ray or electron) per molecule through :class:`xstructure.Pool`,
   molecules spread over a dask LocalCluster (one work directory can hold both probes' patterns);
3. per molecule, its linear reader and the network's input features for its pool's noisy patterns;
4. the shared network, trained on the training molecules (AdamW, MSE on positions, heavy atoms weighted 1,
   hydrogens 0.1), the epoch with the lowest validation loss kept.

The model (safetensors + JSON with the training molecules' InChIKey and SMILES and the split) goes to --out.

    python benchmarks/train_general.py --out python/xstructure/data/models/general-xray     # ≤ 90 min, 2 cores
    python benchmarks/train_general.py --probe electron --out python/xstructure/data/models/general-electron
    python benchmarks/train_general.py --quick --out /tmp/general-quick                      # a few minutes
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

import numpy as np


def _pool_job(args):
    """Make (or finish) one molecule's pool (Wigner at 300 K, or Langevin MD when hot) with the probe's patterns;
    returns (index, seconds, error or '')."""
    i, smiles, path, n, q, seed, probe, method, temperature = args
    from xstructure import Pool

    t0 = time.perf_counter()
    try:
        pool = Pool.create(path, smiles, method, n=n, temperature=temperature, seed=seed, chunk=n, progress=False)
        sets = pool.pattern_sets()
        if probe not in sets or not sets[probe]["complete"]:
            pool.simulate(q, probe=probe, signal="molecular", name=probe, progress=False)
    except Exception as exc:  # noqa: BLE001 - a molecule MMFF94 cannot handle is dropped and counted
        shutil.rmtree(path, ignore_errors=True)
        return i, time.perf_counter() - t0, f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
    return i, time.perf_counter() - t0, ""


def make_pools(lib, work, n, q, workers, probe, hot=0.0):
    """Pools for every library molecule on a dask LocalCluster (Wigner at 300 K; with ``hot``, Langevin MD at that
    temperature in a folder of its own); returns (paths, failures, seconds, bytes)."""
    from dask.distributed import Client, LocalCluster

    folder = f"hot-{hot:g}K" if hot else "pools"
    os.makedirs(os.path.join(work, folder), exist_ok=True)
    method, temperature, seed0 = ("md", hot, 50_000) if hot else ("wigner", 300.0, 0)
    jobs = [(i, s, os.path.join(work, folder, f"{k}"), n, q, seed0 + i, probe, method, temperature)
            for i, (s, k) in enumerate(zip(lib.smiles, lib.inchikey))]
    t0 = time.perf_counter()
    failures = {}
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        futures = client.map(_pool_job, jobs, pure=False)
        from dask.distributed import as_completed

        for done, fut in enumerate(as_completed(futures), 1):
            i, _, err = fut.result()
            if err:
                failures[i] = err
            if done % 200 == 0 or done == len(jobs):
                print(f"  pools {done}/{len(jobs)} ({len(failures)} failed) {time.perf_counter() - t0:.0f} s",
                      flush=True)
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(os.path.join(work, folder))
               for f in fs)
    return [j[2] for j in jobs], failures, time.perf_counter() - t0, size


def features_for(model, pool_path, smiles, noise, seed, temperature=None):
    """Network inputs and targets for one pool (read at ``temperature``, default the model's): dict of float32
    arrays (n, N, ...)."""
    import torch

    from xstructure import Pool

    pool = Pool.open(pool_path)
    I = np.asarray(pool.patterns(model.config["probe"])[1][:], dtype=np.float64)
    X = np.asarray(pool.positions[:], dtype=np.float64)
    rng = np.random.default_rng(seed)
    I = I + noise * np.abs(I) * rng.standard_normal(I.shape)
    reader = model.reader(smiles, model.grid, noise, temperature)
    if not np.allclose(reader.atoms.numbers, pool.numbers):
        raise ValueError("pool and reader atoms differ")
    # the pool's frame is that of the same MMFF94 minimum; superpose anyway (no rotation when they agree)
    from xstructure.learn.data import aligned_to

    x0 = reader.atoms.positions
    X = aligned_to(x0, X) + x0.mean(0)
    with torch.no_grad():
        f, v1, v2 = reader.features(I)
    return dict(f=f.numpy().astype(np.float32), v1=v1.numpy().astype(np.float32),
                v2=v2.numpy().astype(np.float32), x0=np.broadcast_to(x0, X.shape).astype(np.float32),
                y=X.astype(np.float32), heavy=np.broadcast_to(reader.numbers > 1, X.shape[:2]).copy())


def pad_stack(items, max_atoms):
    """Concatenate per-molecule dicts into padded arrays (S, max_atoms, ...) and a padding mask."""
    S = sum(len(it["f"]) for it in items)
    out = {k: np.zeros((S, max_atoms) + items[0][k].shape[2:], dtype=items[0][k].dtype) for k in items[0]}
    pad = np.ones((S, max_atoms), dtype=bool)
    s = 0
    for it in items:
        n, N = it["f"].shape[:2]
        for k in out:
            out[k][s:s + n, :N] = it[k]
        pad[s:s + n, :N] = False
        s += n
    out["pad"] = pad
    return out


def train_net(model, train, val, *, epochs, batch, lr, max_minutes, seed):
    import torch

    from xstructure.learn.general import combine

    torch.manual_seed(seed)
    net = model.net
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    T = {k: torch.as_tensor(v) for k, v in train.items()}
    V = {k: torch.as_tensor(v) for k, v in val.items()}
    n = len(T["f"])
    steps = epochs * ((n + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)

    def loss_of(D, idx):
        w = net(D["f"][idx], D["pad"][idx])
        x = combine(w, D["v1"][idx], D["v2"][idx], D["x0"][idx])
        err = ((x - D["y"][idx]) ** 2).sum(-1)
        wt = torch.where(D["heavy"][idx], 1.0, 0.1) * (~D["pad"][idx])
        return (err * wt).sum() / wt.sum()

    def val_loss():
        net.eval()
        with torch.no_grad():
            tot = [loss_of(V, torch.arange(s, min(s + 4096, len(V["f"])))).item() * min(4096, len(V["f"]) - s)
                   for s in range(0, len(V["f"]), 4096)]
        net.train()
        return sum(tot) / len(V["f"])

    best, best_state, history = val_loss(), {k: v.clone() for k, v in net.state_dict().items()}, []
    print(f"  epoch 0: val MSE {best:.5f} Å² (the linear reader alone)", flush=True)
    t0 = time.perf_counter()
    for ep in range(1, epochs + 1):
        perm = torch.randperm(n)
        tot = 0.0
        for s in range(0, n, batch):
            idx = perm[s:s + batch]
            loss = loss_of(T, idx)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            sched.step()
            tot += loss.item() * len(idx)
        v = val_loss()
        history.append(dict(epoch=ep, train=tot / n, val=v, seconds=time.perf_counter() - t0))
        print(f"  epoch {ep}: train {tot / n:.5f} val {v:.5f} Å² ({time.perf_counter() - t0:.0f} s)", flush=True)
        if v < best:
            best, best_state = v, {k: x.clone() for k, x in net.state_dict().items()}
        if max_minutes and time.perf_counter() - t0 > 60 * max_minutes:
            print("  time budget reached", flush=True)
            break
    net.load_state_dict(best_state)
    net.eval()
    return history, best


def held_out_records(lib, gone=()):
    """Validation and test molecules for the model's config, without any whose stereo-free InChIKey (a
    stereoisomer: the same isotropic pattern) is among the training molecules."""
    from xstructure.learn.library import connectivity_key

    train_keys = {k[:14] for k, sp, s in zip(lib.inchikey, lib.split, lib.smiles) if sp == "train" and s not in gone}
    out = []
    for k, s, sp, sc in zip(lib.inchikey, lib.smiles, lib.split, lib.scaffold):
        if sp == "train":
            continue
        if connectivity_key(s) in train_keys:
            print(f"  held-out {s} dropped: a stereoisomer is in training", flush=True)
            continue
        out.append(dict(inchikey=k, smiles=s, split=sp, scaffold=sc))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="model directory (config.json + model.safetensors)")
    ap.add_argument("--work", default="general-work", help="pools and library (kept; reruns resume)")
    ap.add_argument("--quick", action="store_true",
                    help="300 molecules, 32 samples each, 3 epochs (unless given explicitly)")
    ap.add_argument("--molecules", type=int, help="library size (default 2400)")
    ap.add_argument("--samples", type=int, help="pool members per molecule (default 64)")
    ap.add_argument("--epochs", type=int, help="most epochs (default 12)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--max-minutes", type=float, default=40.0, help="training time budget (default 40)")
    ap.add_argument("--workers", type=int, default=2, help="dask worker processes for the pools (default 2)")
    ap.add_argument("--probe", choices=("xray", "electron"), default="xray", help="the patterns' probe (default xray)")
    ap.add_argument("--hot-temperature", type=float, default=0.0,
                    help="also train on a Langevin MD pool per molecule at this temperature (K), read at it")
    ap.add_argument("--hot-samples", type=int, help="members of each hot pool (default: --samples)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    for name, full, quick in (("molecules", 2400, 300), ("samples", 64, 32), ("epochs", 12, 3)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    import torch

    from xstructure.learn.general import DEFAULTS, GeneralInterpreter
    from xstructure.learn.library import Library, build_library, check_split

    torch.set_num_threads(2)
    t_all = time.perf_counter()
    os.makedirs(args.work, exist_ok=True)
    run = {k: getattr(args, k) for k in ("quick", "molecules", "samples", "seed")}
    run_path = os.path.join(args.work, "run.json")
    if os.path.exists(run_path):
        with open(run_path) as fh:
            before = json.load(fh)
        if before != run:
            sys.exit(f"{args.work} holds a run made with {before}, not {run}: use another --work directory")
    else:
        with open(run_path, "w") as fh:
            json.dump(run, fh)
    lib_path = os.path.join(args.work, "library.json")
    timings = {}
    t0 = time.perf_counter()
    if os.path.exists(lib_path):
        lib = Library.from_json(lib_path)
    else:
        lib = build_library(args.molecules, seed=args.seed)
        if args.quick:  # a random subset of each part of the split (at least 2 validation and test molecules)
            rng = np.random.default_rng(args.seed)
            keep = set()
            for part, frac in (("train", 0.88), ("val", 0.04), ("test", 0.08)):
                idx = lib.where(part)
                keep |= {idx[i] for i in rng.permutation(len(idx))[:max(2, round(frac * args.molecules))]}
            lib = lib.drop([i for i in range(len(lib)) if i not in keep])
        lib.to_json(lib_path)
    check_split(lib.smiles, lib.split)
    timings["library_s"] = time.perf_counter() - t0
    print(f"library: {len(lib)} molecules, {lib.split.count('train')} train / {lib.split.count('val')} val / "
          f"{lib.split.count('test')} test ({timings['library_s']:.0f} s)", flush=True)
    q = np.linspace(DEFAULTS["q_min"], DEFAULTS["q_max"], DEFAULTS["n_q"])
    paths, failures, secs, size = make_pools(lib, args.work, args.samples, q, args.workers, args.probe)
    timings["pools_s"], timings["pools_bytes"] = secs, size
    print(f"pools: {len(lib) - len(failures)} made, {len(failures)} failed, {secs:.0f} s, {size / 2**20:.1f} MiB",
          flush=True)
    hot_paths = {}
    if args.hot_temperature:
        hpaths, hfail, hsecs, hsize = make_pools(lib, args.work, args.hot_samples or args.samples, q, args.workers,
                                                 args.probe, hot=args.hot_temperature)
        timings["hot_pools_s"], timings["hot_pools_bytes"], timings["hot_pool_failures"] = hsecs, hsize, len(hfail)
        print(f"hot pools ({args.hot_temperature:g} K): {len(hpaths) - len(hfail)} made, {len(hfail)} failed, "
              f"{hsecs:.0f} s, {hsize / 2**20:.1f} MiB", flush=True)
        hot_paths = {lib.smiles[i]: p for i, p in enumerate(hpaths) if i not in hfail and i not in failures}
    lib = lib.drop(failures)
    paths = [p for i, p in enumerate(paths) if i not in failures]
    lib.to_json(os.path.join(args.work, "library_kept.json"))
    model = GeneralInterpreter({"seed": args.seed, "probe": args.probe})
    t0 = time.perf_counter()
    parts = {"train": [], "val": []}
    dropped = []
    for k, (s, p, sp) in enumerate(zip(lib.smiles, paths, lib.split)):
        if sp not in parts:
            continue
        try:
            parts[sp].append(features_for(model, p, s, model.config["noise"], args.seed + k))
        except ValueError as exc:
            dropped.append((s, str(exc)))
        if s in hot_paths and (not dropped or dropped[-1][0] != s):
            try:
                parts[sp].append(features_for(model, hot_paths[s], s, model.config["noise"], args.seed + 7 * k + 1,
                                              temperature=args.hot_temperature))
            except ValueError as exc:
                print(f"  hot pool of {s} dropped: {exc}", flush=True)
        model.clear_cache()
        if (k + 1) % 200 == 0:
            print(f"  features {k + 1}/{len(lib)} {time.perf_counter() - t0:.0f} s", flush=True)
    timings["features_s"] = time.perf_counter() - t0
    print(f"features: {timings['features_s']:.0f} s ({len(dropped)} dropped)", flush=True)
    train = pad_stack(parts["train"], DEFAULTS["max_atoms"])
    val = pad_stack(parts["val"], DEFAULTS["max_atoms"])
    t0 = time.perf_counter()
    history, best = train_net(model, train, val, epochs=args.epochs, batch=args.batch, lr=args.lr,
                              max_minutes=args.max_minutes, seed=args.seed)
    timings["training_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - t_all
    gone = {s for s, _ in dropped}
    held = held_out_records(lib, gone)
    model.config.update(
        molecules=[dict(inchikey=k, smiles=s) for k, s, sp in zip(lib.inchikey, lib.smiles, lib.split)
                   if sp == "train" and s not in gone],
        split=held,
        training=dict(history=history, best_val_mse=best, timings=timings, samples_per_molecule=args.samples,
                      hot_temperature=args.hot_temperature or None,
                      pool_failures=len(failures), torch=torch.__version__, quick=bool(args.quick)))
    model.save(args.out)
    with open(os.path.join(args.work, "train_report.json"), "w") as fh:
        json.dump(dict(timings=timings, history=history, failures=failures, dropped=dropped), fh, indent=1)
    print(f"model {args.out}: {model}; total {timings['total_s'] / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
