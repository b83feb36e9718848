"""Do zero-cost proxies help LINAS's accuracy predictor on NAS-Bench-201?

Zero-cost proxies score an untrained network from one minibatch (or none): NASWOT
(Mellor et al. 2021: log-determinant of the ReLU activation-pattern kernel), synflow,
snip, grad_norm and jacob_cov (Abdelfattah et al. 2021). They rank NB201 CIFAR-10
accuracy at Spearman 0.6-0.8 over the whole space, so they might add to the function
features the accuracy MLP fits on. This script computes them for a random sample of cells
(each on NB201's own ``TinyNetwork``, ``hwnas.dnas.evalnet.NB201Network``, one fixed
initialisation and one fixed batch of real CIFAR-10 training images), then reports

1. each proxy's rank correlation with accuracy over the sample and among its top cells
   (accuracy > 92.5 %, where the Pareto front's accuracies lie), and
2. Kendall tau of LINAS's accuracy predictor (MLP on function features) with and
   without the proxies as extra features, trained on 100 / 200 sampled cells and scored
   on the rest, overall and among the top cells.

    HWNAS_DATA_DIR=../shared/data python benchmarks/zero_cost_proxies.py --cells 800 --jobs 2

The proxies are not in the library: they did not lift the top-region ranking that limits
LINAS (docs/BENCHMARKS.md), and they cost about 0.8 s of CPU per cell here.
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing as mp
import time
import warnings
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch
from scipy.stats import kendalltau, spearmanr
from torch import nn

from hwnas.bench import get_benchmark
from hwnas.data.datasets import load_cifar10
from hwnas.dnas.evalnet import NB201Network
from hwnas.predict import make_predictor
from hwnas.space.nb201 import NB201Space

PROXIES = ("naswot", "synflow", "snip", "grad_norm", "jacob_cov")
TOP = 92.5  # accuracy (%) above which the front's cells lie


def naswot(net: nn.Module, x: torch.Tensor) -> float:
    """log|K| of the Hamming-similarity kernel of the batch's ReLU on/off patterns."""
    codes: list[torch.Tensor] = []

    def hook(_m: nn.Module, inp: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        codes.append((inp[0].detach().flatten(1) > 0).float())

    hooks = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.ReLU)]
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    c = torch.cat(codes, 1)
    K = c @ c.t() + (1 - c) @ (1 - c).t()
    return float(torch.slogdet(K.double())[1])


def synflow(net: nn.Module) -> float:
    """log of sum |theta * dR/dtheta| for R = sum of the output of the network with
    absolute weights, no batch norm, on an all-ones input (data-free)."""
    n = copy.deepcopy(net)
    for m in list(n.modules()):
        for name, child in list(m.named_children()):
            if isinstance(child, nn.BatchNorm2d):
                setattr(m, name, nn.Identity())
    n = n.double()
    with torch.no_grad():
        for p in n.parameters():
            p.abs_()
    n(torch.ones(1, 3, 32, 32, dtype=torch.double)).sum().backward()
    with torch.no_grad():
        s = sum(float((p * p.grad).abs().sum()) for p in n.parameters() if p.grad is not None)
    return float(np.log(s + 1e-30))


def gradient_proxies(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, ...]:
    """snip (log sum |theta * dL/dtheta|), grad_norm (log sum of gradient norms) and
    jacob_cov (eigenvalues of the correlation of input Jacobians)."""
    x = x.clone().requires_grad_(True)
    net.zero_grad()
    out = net(x)
    nn.functional.cross_entropy(out, y).backward(retain_graph=True)
    with torch.no_grad():
        grads = [(p, p.grad) for p in net.parameters() if p.grad is not None]
        snip = sum(float((p * g).abs().sum()) for p, g in grads)
        gnorm = sum(float(g.norm()) for _, g in grads)
    x.grad = None
    out.sum().backward()
    corr = np.nan_to_num(np.corrcoef(x.grad.flatten(1).numpy()))
    v = np.linalg.eigvalsh(corr)
    jac = -float(np.sum(np.log(v + 1e-5) + 1.0 / (v + 1e-5)))
    return float(np.log(snip + 1e-30)), float(np.log(gnorm + 1e-30)), jac


def score_cells(vectors: np.ndarray, batch: int, seed: int) -> np.ndarray:
    """(n, 5) proxies of the cells, in ``PROXIES`` order (one thread per process)."""
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    data = load_cifar10()
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data.y_train), generator=g)[:batch]
    x, y = data.x_train[idx], data.y_train[idx]
    space = NB201Space()
    out = []
    for v in vectors:
        torch.manual_seed(seed)
        net = NB201Network(space.decode(v)).train()
        out.append([naswot(net, x), synflow(net), *gradient_proxies(net, x, y)])
    return np.asarray(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cells", type=int, default=800)
    ap.add_argument("--batch", type=int, default=32, help="CIFAR-10 images per proxy batch")
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    bench = get_benchmark("nb201", devices="pixel3")
    X, V = bench.table()
    rng = np.random.default_rng(args.seed)
    rows = rng.choice(len(X), args.cells, replace=False)
    t0 = time.perf_counter()
    parts = np.array_split(rows, args.jobs)
    with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as ex:
        futures = [ex.submit(score_cells, X[p], args.batch, args.seed) for p in parts]
        P = np.concatenate([f.result() for f in futures])
    print(f"{args.cells} cells scored in {time.perf_counter() - t0:.0f} s ({args.jobs} jobs)\n")
    acc = V[rows, 0]
    top = acc > TOP
    print(f"| proxy | Spearman rho, all | Kendall tau, accuracy > {TOP} % | non-finite |")
    print("|---|---|---|---|")
    for j, name in enumerate(PROXIES):
        ok = np.isfinite(P[:, j])
        rho = spearmanr(P[ok, j], acc[ok])[0]
        tau = kendalltau(P[ok & top, j], acc[ok & top])[0]
        print(f"| {name} | {rho:.3f} | {tau:.3f} | {int((~ok).sum())} |")
        P[~ok, j] = P[ok, j].min()  # e.g. a singular NASWOT kernel: the worst score
    F = bench.space.function_features(X[rows])
    sets = {"function features": F, "+ 5 proxies": np.concatenate([F, P], axis=1)}
    print(f"\nMLP accuracy predictor, mean of {args.trials} draws, tau all / tau top")
    print("\n| training cells | " + " | ".join(sets) + " |")
    print("|---|" + "---|" * len(sets))
    for size in [n for n in (100, 200) if n <= len(rows) // 2]:
        res: dict[str, list[tuple[float, float]]] = {k: [] for k in sets}
        for _ in range(args.trials):
            perm = rng.permutation(len(rows))
            tr, te = perm[:size], perm[size:]
            for k, A in sets.items():
                pred = make_predictor("mlp", seed=args.seed).fit(A[tr], acc[tr]).predict(A[te])
                s = top[te]
                res[k].append((kendalltau(pred, acc[te])[0], kendalltau(pred[s], acc[te][s])[0]))
        cells = [
            f"{np.mean([a for a, _ in r]):.3f} / {np.mean([b for _, b in r]):.3f}"
            for r in res.values()
        ]
        print(f"| {size} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
