"""Derive the discrete cell from architecture weights, and look NB201 cells up.

* DARTS (``derive_darts``): per intermediate node keep the two incoming edges whose
  strongest non-'none' op weight is largest, each with its argmax op excluding 'none'
  (the DARTS ``_parse`` rule, same order and tie-breaking: strongest edge first, lower
  index first on ties).
* NAS-Bench-201 (``derive_nb201``): the argmax op of each of the 6 edges over all 5 ops
  ('none' included: a cell with 'none' edges is a valid NB201 cell), as an arch string.

Budget-aware derivation (``derive_within``, DSearchConfig ``derivation="feasible"``, the
default): the argmax cell can exceed the device budget (a 0.3 softmax weight on a conv is
enough to pick it) and, on NB201, can be disconnected ('none' edges cut the input off the
output: the network then outputs a constant). The feasible rule picks the cell with the
highest alpha score (sum of log softmax weights of its chosen ops) among the cells that fit
the budget (and, on NB201, are connected): NB201 by enumerating all 15,625 cells (exact,
with the measured latency where the budget is latency); DARTS by Lagrangian relaxation of
the multiple-choice knapsack (per node the best pair of inputs under score - mu * cost,
mu bisected to the smallest value that fits). With mu = 0 both reduce to the plain rules, so
the argmax cell is kept whenever it fits.

``nb201_record`` maps an arch string to its NAS-Bench-201 ``index``, true test accuracies
and the 27 device latencies of the benchmark table.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from hwnas.dnas.genotype import Genotype
from hwnas.dnas.ops import DARTS_OPS, NB201_OPS
from hwnas.errors import HwnasError

DARTS_STEPS = 4
NB201_NODES = 3


def _weights(alpha: torch.Tensor | np.ndarray) -> np.ndarray:
    """Softmax over the last axis as float64 numpy (derivation needs no gradient)."""
    a = (
        alpha.detach().cpu().double()
        if isinstance(alpha, torch.Tensor)
        else torch.as_tensor(np.asarray(alpha, dtype=np.float64))
    )
    return torch.softmax(a, dim=-1).numpy()


def darts_edge_index(node: int, source: int) -> int:
    """Edge row of (intermediate node ``node`` (0-based), input state ``source``) in a
    DARTS alpha matrix: node 0 has edges 0-1, node 1 edges 2-4, node 2 5-8, node 3 9-13."""
    if not 0 <= source < node + 2:
        raise HwnasError(f"DARTS node {node} has no input {source}")
    return sum(2 + i for i in range(node)) + source


def darts_cell_edges(weights: np.ndarray, steps: int = DARTS_STEPS) -> list[tuple[str, int]]:
    """The DARTS rule on one cell's (n_edges, 8) op weights: two ``(op, input)`` per node."""
    w = np.asarray(weights, dtype=np.float64)
    n_edges = sum(2 + i for i in range(steps))
    if w.shape != (n_edges, len(DARTS_OPS)):
        raise HwnasError(f"DARTS cell weights must be ({n_edges}, 8), got {tuple(w.shape)}")
    none = DARTS_OPS.index("none")
    others = [k for k in range(len(DARTS_OPS)) if k != none]
    gene: list[tuple[str, int]] = []
    start, n = 0, 2
    for _ in range(steps):
        rows = w[start : start + n]
        edges = sorted(range(n), key=lambda j: -max(rows[j][k] for k in others))[:2]
        for j in edges:
            k_best = max(others, key=lambda k: (rows[j][k], -k))
            gene.append((DARTS_OPS[k_best], j))
        start += n
        n += 1
    return gene


def derive_darts(
    alpha_normal: torch.Tensor | np.ndarray,
    alpha_reduce: torch.Tensor | np.ndarray,
    steps: int = DARTS_STEPS,
) -> Genotype:
    """DARTS genotype of the two alpha matrices (softmax, then the DARTS rule)."""
    concat = list(range(2, 2 + steps))
    return Genotype(
        normal=darts_cell_edges(_weights(alpha_normal), steps),
        normal_concat=concat,
        reduce=darts_cell_edges(_weights(alpha_reduce), steps),
        reduce_concat=concat,
    )


def genotype_edges(genotype: Genotype) -> dict[str, list[tuple[int, str]]]:
    """``(edge row, op)`` pairs of each DARTS cell type of ``genotype`` (two per node)."""
    out: dict[str, list[tuple[int, str]]] = {}
    for t in ("normal", "reduce"):
        gene = getattr(genotype, t)
        out[t] = [(darts_edge_index(idx // 2, j), name) for idx, (name, j) in enumerate(gene)]
    return out


def nb201_ops_of(alpha: torch.Tensor | np.ndarray) -> list[int]:
    """Argmax op index of each of the 6 NB201 edges (over all 5 ops, 'none' included)."""
    a = alpha.detach().cpu().numpy() if isinstance(alpha, torch.Tensor) else np.asarray(alpha)
    if a.shape != (6, len(NB201_OPS)):
        raise HwnasError(f"NB201 alpha must be (6, 5), got {tuple(a.shape)}")
    return [int(i) for i in np.argmax(a, axis=1)]


def nb201_arch_str(ops: Sequence[int]) -> str:
    """Arch string of 6 op indices in NB201 edge order (1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2)."""
    o = [NB201_OPS[i] for i in ops]
    return f"|{o[0]}~0|+|{o[1]}~0|{o[2]}~1|+|{o[3]}~0|{o[4]}~1|{o[5]}~2|"


def derive_nb201(alpha: torch.Tensor | np.ndarray) -> str:
    """NB201 arch string of the per-edge argmax of ``alpha`` (6, 5)."""
    return nb201_arch_str(nb201_ops_of(alpha))


def nb201_connected(vectors: np.ndarray | Sequence[int]) -> np.ndarray:
    """Whether node 3 of each NB201 cell (rows of 6 op indices) is reachable from node 0
    through non-'none' edges; a disconnected cell's output does not depend on its input."""
    on = np.atleast_2d(np.asarray(vectors)) != NB201_OPS.index("none")
    r1 = on[:, 0]
    r2 = on[:, 1] | (r1 & on[:, 2])
    return on[:, 3] | (r1 & on[:, 4]) | (r2 & on[:, 5])


def _log_weights(alpha: torch.Tensor | np.ndarray) -> np.ndarray:
    return np.log(np.clip(_weights(alpha), 1e-300, None))


def derive_nb201_within(
    alpha: torch.Tensor | np.ndarray, cost_by_code: np.ndarray, budget: float
) -> str | None:
    """Highest-scoring connected NB201 cell with ``cost_by_code[code] <= budget`` (exact,
    by enumeration); ``None`` when no connected cell fits."""
    from hwnas.space.nb201 import NB201Space

    logw = _log_weights(alpha)
    if logw.shape != (6, len(NB201_OPS)):
        raise HwnasError(f"NB201 alpha must be (6, 5), got {tuple(logw.shape)}")
    vectors = NB201Space().all_vectors()  # row i has base-5 code i
    ok = (np.asarray(cost_by_code) <= budget) & nb201_connected(vectors)
    if not ok.any():
        return None
    score = np.where(ok, logw[np.arange(6)[None, :], vectors].sum(axis=1), -np.inf)
    return nb201_arch_str(vectors[int(np.argmax(score))])


def _darts_choice(
    logw: np.ndarray, cost: np.ndarray, mu: float, steps: int
) -> tuple[list[tuple[str, int]], float]:
    """Per node the two inputs (and their non-'none' op) maximising log w - mu * cost;
    the DARTS rule when mu = 0. Returns the gene and its cost."""
    none = DARTS_OPS.index("none")
    val = logw - mu * cost
    val[:, none] = -np.inf
    gene: list[tuple[str, int]] = []
    total = 0.0
    start, n = 0, 2
    for _ in range(steps):
        rows = val[start : start + n]
        best_k = np.argmax(rows, axis=1)  # lowest op index on ties
        best_v = rows[np.arange(n), best_k]
        for j in sorted(range(n), key=lambda j: -best_v[j])[:2]:
            gene.append((DARTS_OPS[int(best_k[j])], j))
            total += float(cost[start + j, best_k[j]])
        start += n
        n += 1
    return gene, total


def with_tolerance(budget: float) -> float:
    """``budget`` plus the rounding of summing costs in another order (1e-9 relative)."""
    return budget + 1e-9 * max(1.0, abs(budget))


def derive_darts_within(
    alpha_normal: torch.Tensor | np.ndarray,
    alpha_reduce: torch.Tensor | np.ndarray,
    tables: dict[str, Any],
    fixed: float,
    budget: float,
    steps: int = DARTS_STEPS,
) -> Genotype | None:
    """DARTS genotype fitting ``fixed + sum of chosen (edge, op) costs <= budget`` with the
    highest score found by Lagrangian relaxation (see the module docstring); ``None`` when
    even the cheapest choice does not fit. ``tables[t]`` is a (14, 8) cost table per cell
    type (``ResourceModel.tables``)."""
    lw = {"normal": _log_weights(alpha_normal), "reduce": _log_weights(alpha_reduce)}
    cost = {t: np.asarray(tables[t], dtype=np.float64) for t in ("normal", "reduce")}
    # sums of the same costs in another order differ in the last bits: a cell at the
    # budget meets it (the search's summary judges with the same tolerance)
    budget = with_tolerance(budget)

    def choose(mu: float) -> tuple[Genotype, float]:
        genes, total = {}, fixed
        for t in ("normal", "reduce"):
            genes[t], c = _darts_choice(lw[t], cost[t], mu, steps)
            total += c
        concat = list(range(2, 2 + steps))
        return Genotype(genes["normal"], concat, genes["reduce"], concat), total

    g, c = choose(0.0)
    if c <= budget:
        return g
    scale = max(float(np.abs(cost["normal"]).max()), float(np.abs(cost["reduce"]).max()), 1e-30)
    lo, hi = 0.0, 1.0 / scale
    for _ in range(60):  # grow mu until the choice fits
        g, c = choose(hi)
        if c <= budget:
            break
        lo, hi = hi, hi * 4
    else:
        return None
    best = g
    for _ in range(60):  # smallest mu that fits (the cost is non-increasing in mu)
        mid = 0.5 * (lo + hi)
        g, c = choose(mid)
        if c <= budget:
            hi, best = mid, g
        else:
            lo = mid
    return best


def derive(space: str, alphas: Sequence[torch.Tensor]) -> Genotype | str:
    """Discrete cell of ``space`` from its alpha list (darts: [normal, reduce]; nb201: [a])."""
    if space == "darts":
        return derive_darts(alphas[0], alphas[1])
    if space == "nb201":
        return derive_nb201(alphas[0])
    raise HwnasError(f"unknown cell space '{space}' (use darts or nb201)")


def nb201_table(data_dir: str | os.PathLike[str] | None = None) -> tuple[np.ndarray, Any]:
    """(row of each base-5 code, the NB201 table as a DataFrame), loaded once per file."""
    from hwnas.bench.nb201 import NB201_FILE, _load_table
    from hwnas.config import data_file

    return _load_table(data_file(NB201_FILE, data_dir))


def nb201_row(arch_str: str, data_dir: str | os.PathLike[str] | None = None) -> int:
    """Row of ``arch_str`` in the NB201 table."""
    from hwnas.space.nb201 import NB201Space

    space = NB201Space()
    row_of_code, _ = nb201_table(data_dir)
    return int(row_of_code[int(space.index_of(space.encode(arch_str))[0])])


def nb201_record(arch_str: str, data_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Benchmark facts of one NB201 cell: ``index``, ``arch_str``, ``test_acc`` per
    dataset (%, 200 epochs) and ``latency_ms`` on every device of the table."""
    from hwnas.bench.nb201 import NB201_DATASETS

    _, df = nb201_table(data_dir)
    row = df.iloc[nb201_row(arch_str, data_dir)]
    index = int(row["index"]) if "index" in df.columns else nb201_row(arch_str, data_dir)
    return {
        "index": index,
        "arch_str": str(row["arch_str"]),
        "test_acc": {d: float(row[f"{d}_test_acc"]) for d in NB201_DATASETS},
        "latency_ms": {c[4:]: float(row[c]) for c in df.columns if c.startswith("lat_")},
    }
