"""DCA-NAS search: search networks, derivation, resource models, the constrained search,
resume, lookup graph and CLI, all at tiny scale (real CIFAR-10 shards, 8x8 inputs)."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

from hwnas.dnas.derivation import (
    darts_cell_edges,
    derive_darts,
    derive_darts_within,
    derive_nb201,
    derive_nb201_within,
    nb201_connected,
    nb201_record,
)
from hwnas.dnas.genotype import DARTS_V2
from hwnas.dnas.lookup import LookupGraph
from hwnas.dnas.ops import (
    DARTS_OPS,
    NB201_OPS,
    FactorizedReduce,
    ReLUConvBN,
    ResNetBasicBlock,
    make_op,
)
from hwnas.dnas.resources import EvalNetConfig, parse_constraint, resource_model
from hwnas.dnas.search import DSearchConfig, dsearch, penalized_objective, resolve_budgets
from hwnas.dnas.search_model import SearchCell, SearchNetwork
from hwnas.errors import HwnasError

torch.set_num_threads(1)

TINY = {
    "space": "nb201",
    "dataset": "cifar10",
    "channels": 4,
    "stage_cells": 1,
    "train_subset": 64,
    "batch_size": 16,
    "image_size": 8,
    "steps_per_epoch": 2,
    "epochs": 1,
    "seed": 0,
}
CONV = [NB201_OPS.index("nor_conv_1x1"), NB201_OPS.index("nor_conv_3x3")]


# ---- constraints ------------------------------------------------------------------------
def test_constraint_parsing() -> None:
    c = parse_constraint("params<=3.5e6")
    assert (c.metric, c.budget, c.device) == ("params", 3.5e6, None)
    assert parse_constraint(" flops <= 600e6 ").budget == 600e6
    c = parse_constraint("latency:pixel3<=5.5")
    assert (c.metric, c.device, c.budget, c.key) == ("latency", "pixel3", 5.5, "latency:pixel3")
    bad = {
        "params>=3": "upper bounds",
        "params": "METRIC<=BUDGET",
        "energy<=3": "unknown constraint metric",
        "latency<=3": "needs a device",
        "params:pixel3<=3": "takes no device",
        "params<=abc": "not a number",
        "params<=-1": "positive",
        "params<=inf": "positive",
        "": "empty",
    }
    for text, msg in bad.items():
        with pytest.raises(HwnasError, match=msg):
            parse_constraint(text)


def test_config_errors() -> None:
    with pytest.raises(HwnasError, match="unknown search setting 'bogus'"):
        DSearchConfig.from_dict({"bogus": 1})
    with pytest.raises(HwnasError, match="need a constraint"):
        DSearchConfig.from_dict({"search_budget": 1e5})
    with pytest.raises(HwnasError, match="not both"):
        DSearchConfig.from_dict(
            {"constraint": "params<=1e6", "search_budget": 1e5, "lookup": "x.json"}
        )
    with pytest.raises(HwnasError, match="latency table"):
        DSearchConfig.from_dict({"space": "darts", "constraint": "latency:pixel3<=5"})
    with pytest.raises(HwnasError, match="epochs"):
        DSearchConfig.from_dict({"epochs": 0})


# ---- search network ----------------------------------------------------------------------
@pytest.mark.parametrize("space", ["nb201", "darts"])
def test_reductions_switch_and_run(space: str) -> None:
    layers = 3 if space == "darts" else 1
    n_edges, n_ops = (14, 8) if space == "darts" else (6, 5)
    n_sources = 5 if space == "darts" else 3
    for ws, bn, dc in itertools.product([False, True], [1, 2], [False, True]):
        torch.manual_seed(0)
        net = SearchNetwork(
            space, C=4, layers=layers, weight_sharing=ws, bottleneck=bn, derived_cells=dc
        )
        alphas = net.arch_parameters()
        assert [tuple(a.shape) for a in alphas] == [(n_edges, n_ops)] * len(alphas)
        assert len(alphas) == (2 if space == "darts" else 1)
        assert len(net.weight_parameters()) + len(alphas) == len(list(net.parameters()))
        cell = next(m for m in net.modules() if isinstance(m, SearchCell))
        # one module per (source, op) with sharing, per (edge, op) without; 'none' has none
        assert len(cell.bank) == (n_sources if ws else n_edges) * (n_ops - 1)
        assert hasattr(cell, "down") == (bn > 1)
        out = net(torch.randn(2, 3, 8, 8))
        assert out.shape == (2, 10)
        out.sum().backward()
        assert all(a.grad is not None and torch.isfinite(a.grad).all() for a in alphas)


def test_derived_cells_run_only_the_derived_ops() -> None:
    torch.manual_seed(0)
    net = SearchNetwork("nb201", C=4, layers=2, weight_sharing=True, derived_cells=True)
    ops = [3, 1, 2, 0, 4, 3]
    with torch.no_grad():
        net.alpha.zero_()
        net.alpha[torch.arange(6), torch.tensor(ops)] = 5.0
    cells = [c for c in net.cells if isinstance(c, SearchCell)]
    assert len(cells) == 6
    called: dict[int, set[str]] = {i: set() for i in range(len(cells))}
    for i, c in enumerate(cells):
        for key, mod in c.bank.items():
            mod.register_forward_hook(lambda *_, i=i, key=key: called[i].add(key))
    net(torch.randn(2, 3, 8, 8))
    sources = [0, 0, 1, 0, 1, 2]  # of the edges 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2
    want = {f"s{j}_{k}" for j, k in zip(sources, ops, strict=True) if k != 0}
    assert called[0] == {f"s{j}_{k}" for j in range(3) for k in range(1, 5)}  # searchable
    for i in range(1, 6):
        assert called[i] == want
    assert (
        net.genotype()
        == "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|"
    )


# ---- derivation --------------------------------------------------------------------------
def test_darts_derivation_rule() -> None:
    w = np.full((14, 8), 0.01)
    none, sep3, mp, dil5 = (
        DARTS_OPS.index(o) for o in ("none", "sep_conv_3x3", "max_pool_3x3", "dil_conv_5x5")
    )
    w[0, none], w[0, dil5] = 0.9, 0.05  # 'none' strongest: the best other op is kept
    w[1, sep3] = 0.2
    w[2, none] = 0.95  # strongest only through 'none': dropped from the top-2
    w[3, sep3], w[4, mp] = 0.5, 0.3
    w[5, mp], w[8, sep3] = 0.4, 0.6  # node 2: edges from inputs 0 and 3
    w[12, dil5], w[13, sep3] = 0.3, 0.2  # node 3: inputs 3 and 4
    gene = darts_cell_edges(w)
    assert gene == [  # per node: strongest edge first
        ("sep_conv_3x3", 1),
        ("dil_conv_5x5", 0),
        ("sep_conv_3x3", 1),
        ("max_pool_3x3", 2),
        ("sep_conv_3x3", 3),
        ("max_pool_3x3", 0),
        ("dil_conv_5x5", 3),
        ("sep_conv_3x3", 4),
    ]
    assert all(op != "none" for op, _ in gene)
    g = derive_darts(torch.tensor(np.log(w)), torch.zeros(14, 8))
    assert g.normal == gene and g.normal_concat == [2, 3, 4, 5]
    assert len(g.reduce) == 8 and all(op != "none" for op, _ in g.reduce)


def test_nb201_argmax_and_benchmark_index(data_dir) -> None:
    ops = [3, 1, 2, 0, 4, 3]
    alpha = torch.zeros(6, 5)
    alpha[torch.arange(6), torch.tensor(ops)] = 1.0
    arch = derive_nb201(alpha)
    assert (
        arch
        == "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|"
    )
    df = pd.read_csv(data_dir / "nb201" / "nb201_acc200_latency27.csv.gz")
    row = df[df["arch_str"] == arch].iloc[0]
    rec = nb201_record(arch)
    assert rec["index"] == int(row["index"]) and rec["arch_str"] == arch
    assert rec["test_acc"]["cifar10"] == pytest.approx(row["cifar10_test_acc"])
    assert rec["latency_ms"]["pixel3"] == pytest.approx(row["lat_pixel3"])
    assert len(rec["latency_ms"]) == 27


def test_nb201_connectivity() -> None:
    none, skip, conv = (NB201_OPS.index(o) for o in ("none", "skip_connect", "nor_conv_3x3"))
    cells = [
        [none] * 6,  # nothing
        [conv, none, none, none, none, none],  # node 1 reached, never leaves
        [none, none, none, skip, none, none],  # direct 3<-0
        [conv, none, none, none, skip, none],  # 0 -> 1 -> 3
        [none, none, conv, none, none, conv],  # 1->2->3 but 1 unreached
        [none, skip, none, none, none, conv],  # 0 -> 2 -> 3
        [conv, none, conv, none, none, conv],  # 0 -> 1 -> 2 -> 3
    ]
    assert nb201_connected(np.array(cells)).tolist() == [0, 0, 1, 1, 0, 1, 1]


def test_nb201_disconnected_cells_are_the_benchmarks_constant_output_cells(data_dir) -> None:
    from hwnas.dnas.derivation import nb201_table
    from hwnas.space.nb201 import NB201Space

    row_of_code, df = nb201_table(data_dir)
    acc = df["cifar10_test_acc"].to_numpy()[row_of_code]
    ok = nb201_connected(NB201Space().all_vectors())
    assert (~ok).sum() == 341  # a brute-force count over the 15,625 cells
    assert np.all(acc[~ok] < 15) and np.median(acc[ok]) > 80


def test_nb201_feasible_derivation_is_the_best_fitting_connected_cell() -> None:
    from hwnas.space.nb201 import NB201Space

    model = resource_model("params", EvalNetConfig("nb201", C=16, layers=5, num_classes=10))
    cost = model.derived_all_nb201()
    vectors = NB201Space().all_vectors()
    rng = np.random.default_rng(0)
    alpha = torch.tensor(rng.normal(0, 1.5, (6, 5)))
    argmax = derive_nb201(alpha)
    # a budget the argmax meets (and connected): kept
    alpha_c = alpha.clone()
    alpha_c[:, NB201_OPS.index("nor_conv_3x3")] += 5.0
    assert derive_nb201_within(alpha_c, cost, 2e6) == derive_nb201(alpha_c)
    logw = torch.log_softmax(alpha, -1).numpy()
    score = logw[np.arange(6)[None, :], vectors].sum(1)
    for budget in (8e4, 2e5, 5e5):
        got = derive_nb201_within(alpha, cost, budget)
        v = NB201Space().encode(got)
        code = int(NB201Space().index_of(v)[0])
        assert cost[code] <= budget and nb201_connected(v)[0]
        ok = (cost <= budget) & nb201_connected(vectors)
        assert score[code] == pytest.approx(score[ok].max())  # brute force
        if model.derived(argmax) <= budget and nb201_connected(NB201Space().encode(argmax))[0]:
            assert got == argmax
    # argmax disconnected ('none' everywhere strongest): the best connected cell instead
    alpha_n = torch.zeros(6, 5)
    alpha_n[:, NB201_OPS.index("none")] = 3.0
    alpha_n[3, NB201_OPS.index("skip_connect")] = 1.0
    assert derive_nb201(alpha_n) == "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    assert derive_nb201_within(alpha_n, cost, 2e6) == (
        "|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"
    )
    assert derive_nb201_within(alpha, cost, cost.min() - 1) is None


def test_darts_feasible_derivation() -> None:
    model = resource_model("params", EvalNetConfig("darts", C=16, layers=8, num_classes=10))
    rng = np.random.default_rng(1)
    an, ar = (torch.tensor(rng.normal(0, 1, (14, 8))) for _ in range(2))
    argmax = derive_darts(an, ar)
    full = model.derived(argmax)
    assert derive_darts_within(an, ar, model.tables, model.fixed, full) == argmax
    cheapest = derive_darts_within(an, ar, model.tables, model.fixed, 0.0)
    assert cheapest is None  # the stem and classifier alone exceed 0
    last = full
    for frac in (0.8, 0.6, 0.4):
        budget = model.fixed + frac * (full - model.fixed)  # the cells' share shrinks
        g = derive_darts_within(an, ar, model.tables, model.fixed, budget)
        assert g is not None
        c = model.derived(g)
        assert c <= budget and c <= last
        assert all(op != "none" for op, _ in g.normal + g.reduce)
        # still two distinct inputs per node, in the range the node may use
        for gene in (g.normal, g.reduce):
            for node in range(4):
                (_, a), (_, b) = gene[2 * node : 2 * node + 2]
                assert a != b and max(a, b) < node + 2
        last = c


# ---- resources ---------------------------------------------------------------------------
def _rb(a: int, b: int) -> int:
    """Parameters of ResNetBasicBlock(a, b, stride 2)."""
    return 9 * a * b + 2 * b + 9 * b * b + 2 * b + a * b


def test_expected_resource_hand_computed() -> None:
    C, N = 4, 1
    model = resource_model("params", EvalNetConfig("nb201", C=C, layers=N, num_classes=10))
    fixed = (27 * C + 2 * C) + _rb(C, 2 * C) + _rb(2 * C, 4 * C) + 2 * 4 * C + 4 * C * 10 + 10
    assert model.fixed == fixed
    per_op = {  # summed over the 3 stages (N cells each)
        "nor_conv_1x1": N * sum(c * c + 2 * c for c in (C, 2 * C, 4 * C)),
        "nor_conv_3x3": N * sum(9 * c * c + 2 * c for c in (C, 2 * C, 4 * C)),
    }
    alpha = torch.tensor(
        [[0.0, 1.0, 2.0, -1.0, 0.5]] * 3 + [[1.0, 0.0, 0.0, 3.0, 0.0]] * 3, requires_grad=True
    )
    p = torch.softmax(alpha.detach().double(), -1)
    hand = fixed + sum(
        float(p[e, NB201_OPS.index(o)]) * cost for e in range(6) for o, cost in per_op.items()
    )
    r = model.expected([alpha])
    assert float(r.detach()) == pytest.approx(hand, rel=1e-12)
    r.backward()
    g = alpha.grad
    assert g[:, NB201_OPS.index("nor_conv_3x3")].min() > 0  # more conv -> more params
    assert g[:, NB201_OPS.index("none")].max() < 0
    # a near one-hot alpha gives the derived cost
    sharp = torch.full((6, 5), -50.0)
    sharp[:, NB201_OPS.index("nor_conv_3x3")] = 50.0
    arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    assert float(model.expected([sharp])) == pytest.approx(model.derived(arch))
    assert model.derived(arch) == fixed + 6 * per_op["nor_conv_3x3"]


class _NB201Net(nn.Module):
    """Evaluation-like NB201 network built here from the ops, for counting."""

    def __init__(self, ops: list[str], C: int, N: int, ncls: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        layers: list[nn.Module] = []
        for s in range(3):
            c = C * 2**s
            if s:
                layers.append(ResNetBasicBlock(c // 2, c, 2))
            layers += [nn.ModuleList(make_op("nb201", o, c, 1) for o in ops) for _ in range(N)]
        self.layers = nn.ModuleList(layers)
        self.last = nn.Sequential(nn.BatchNorm2d(4 * C), nn.ReLU())
        self.fc = nn.Linear(4 * C, ncls)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for m in self.layers:
            if isinstance(m, nn.ModuleList):
                n1 = m[0](x)
                n2 = m[1](x) + m[2](n1)
                x = m[3](x) + m[4](n1) + m[5](n2)
            else:
                x = m(x)
        return self.fc(self.last(x).mean((2, 3)))


class _DartsCell(nn.Module):
    def __init__(self, gene, c_pp: int, c_p: int, c: int, red: bool, red_prev: bool) -> None:
        super().__init__()
        self.pre0 = FactorizedReduce(c_pp, c) if red_prev else ReLUConvBN(c_pp, c, 1, 1, 0)
        self.pre1 = ReLUConvBN(c_p, c, 1, 1, 0)
        self.idx = [j for _, j in gene]
        self.ops = nn.ModuleList(make_op("darts", o, c, 2 if red and j < 2 else 1) for o, j in gene)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        st = [self.pre0(s0), self.pre1(s1)]
        for i in range(4):
            a, b = 2 * i, 2 * i + 1
            st.append(self.ops[a](st[self.idx[a]]) + self.ops[b](st[self.idx[b]]))
        return torch.cat(st[2:], 1)


class _DartsNet(nn.Module):
    """Evaluation-like DARTS NetworkCIFAR (no auxiliary head) built here from the ops."""

    def __init__(self, g, C: int, layers: int, ncls: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 3 * C, 3, padding=1, bias=False), nn.BatchNorm2d(3 * C)
        )
        c_pp, c_p, c = 3 * C, 3 * C, C
        cells, red_prev = [], False
        for i in range(layers):
            red = i in (layers // 3, 2 * layers // 3)
            c = 2 * c if red else c
            cells.append(_DartsCell(g.reduce if red else g.normal, c_pp, c_p, c, red, red_prev))
            red_prev, c_pp, c_p = red, c_p, 4 * c
        self.cells = nn.ModuleList(cells)
        self.fc = nn.Linear(c_p, ncls)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.fc(s1.mean((2, 3)))


def _flops(net: nn.Module, shape: tuple[int, ...]) -> int:
    net.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        net(torch.zeros(1, *shape))
    return int(counter.get_total_flops())


def test_derived_resource_equals_built_network() -> None:
    ops = ["nor_conv_3x3", "skip_connect", "nor_conv_1x1", "none", "avg_pool_3x3", "nor_conv_3x3"]
    arch = f"|{ops[0]}~0|+|{ops[1]}~0|{ops[2]}~1|+|{ops[3]}~0|{ops[4]}~1|{ops[5]}~2|"
    cfg = EvalNetConfig("nb201", C=4, layers=2, num_classes=7, resolution=8)
    net = _NB201Net(ops, 4, 2, 7)
    assert resource_model("params", cfg).derived(arch) == sum(p.numel() for p in net.parameters())
    assert resource_model("flops", cfg).derived(arch) == _flops(net, (3, 8, 8))

    dcfg = EvalNetConfig("darts", C=4, layers=5, num_classes=10, resolution=8)
    dnet = _DartsNet(DARTS_V2, 4, 5, 10)
    assert resource_model("params", dcfg).derived(DARTS_V2) == sum(
        p.numel() for p in dnet.parameters()
    )
    assert resource_model("flops", dcfg).derived(DARTS_V2) == _flops(dnet, (3, 8, 8))


def test_resource_models_at_evaluation_scale() -> None:
    # published sizes: DARTS-V2 3.3M (C=36, 20 cells), NB201 0.073M..1.53M (C=16, N=5)
    assert resource_model("params", EvalNetConfig("darts")).derived(DARTS_V2) == 3349342
    nb = resource_model("params").derived_all_nb201()
    assert (nb.min(), nb.max()) == (73306, 1531546)


def test_nb201_latency_model(data_dir) -> None:
    model = resource_model(parse_constraint("latency:pixel3<=5"), data_dir=data_dir)
    fit = model.meta["latency_fit"]
    assert 0.5 < fit["r2"] <= 1 and 0.5 < fit["kendall_tau"] <= 1 and fit["n"] == 15625
    arch = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|"
    assert model.derived(arch) == pytest.approx(nb201_record(arch)["latency_ms"]["pixel3"])
    sharp = torch.full((6, 5), -60.0)
    sharp[torch.arange(6), torch.tensor([3, 1, 2, 0, 4, 3])] = 60.0
    assert float(model.expected([sharp])) == pytest.approx(model.predicted(arch))
    with pytest.raises(HwnasError, match="no latency for device"):
        resource_model(parse_constraint("latency:toaster<=5"))


def test_darts_latency_table(tmp_path) -> None:
    ops = [o for o in DARTS_OPS if o != "none"]
    table = {
        "device": "pixel3",
        "fixed": 1.5,
        "normal": {o: 0.1 * (k + 1) for k, o in enumerate(ops)},
        "reduce": {o: [0.01 * e for e in range(14)] for o in ops},
    }
    path = tmp_path / "lat.json"
    path.write_text(json.dumps(table))
    c = parse_constraint("latency:pixel3<=10")
    model = resource_model(c, EvalNetConfig("darts"), latency_table=path)
    hand = 1.5 + sum(0.1 * (ops.index(o) + 1) for o, _ in DARTS_V2.normal)
    hand += sum(0.01 * e for e in (0, 1, 4, 3, 5, 7, 11, 10))  # DARTS-V2 reduce edge rows
    assert model.derived(DARTS_V2) == pytest.approx(hand)
    alpha = torch.zeros(14, 8, requires_grad=True)
    assert float(model.expected([alpha, alpha]).detach()) > 1.5
    del table["reduce"]["sep_conv_3x3"]
    path.write_text(json.dumps(table))
    with pytest.raises(HwnasError, match="lacks op 'sep_conv_3x3'"):
        resource_model(c, EvalNetConfig("darts"), latency_table=path)
    with pytest.raises(HwnasError, match="latency table"):
        resource_model(c, EvalNetConfig("darts"))


# ---- the constrained search --------------------------------------------------------------
def _conv_mass(alpha: torch.Tensor) -> float:
    return float(torch.softmax(alpha, -1)[:, CONV].sum(-1).mean())


def test_tight_budget_raises_lambda_and_moves_alpha_to_cheap_ops(tmp_path) -> None:
    cfg = dict(TINY, constraint="params<=8e4", epochs=3, arch_lr=0.1, lambda_lr=0.5)
    res = dsearch(cfg, tmp_path / "tight", progress=False)
    lams = [r["lambda"] for r in res.history]
    assert all(r["expected"] > 8e4 for r in res.history)  # violated throughout
    assert lams[0] > 0 and all(b > a for a, b in itertools.pairwise(lams))
    assert res.history[-1]["expected"] < res.history[0]["expected"]
    assert _conv_mass(res.alphas[0]) < 0.3  # uniform: 0.4
    s = res.summary
    assert s["budget"] == 8e4 and s["search_budget"] == 8e4 and s["metric"] == "params"
    assert s["satisfied"] == (s["derived"] <= 8e4)
    assert s["nb201"]["best_under_budget"]["cifar10"]["resource"] <= 8e4
    lines = (tmp_path / "tight" / "metrics.jsonl").read_text().splitlines()
    rec = json.loads(lines[-1])
    for key in (
        "epoch", "genotype", "alpha_entropy", "lambda", "expected", "derived", "train_loss",
        "train_acc", "val_loss", "val_acc", "seconds", "peak_rss_mib",
    ):  # fmt: skip
        assert key in rec


def test_summary_derivation_modes(tmp_path) -> None:
    # just above the 73,306 floor (parameter-free cells), alpha near its initial value:
    # the argmax cell holds a conv and violates; the feasible rule has parameter-free ops
    budget = 7.5e4
    cfg = dict(TINY, constraint=f"params<={budget}", eval_channels=16, eval_layers=5, lambda_lr=0.0)
    feas = dsearch(cfg, tmp_path / "feasible", progress=False).summary
    assert feas["derivation"] == "feasible" and feas["derivation_found"] is True
    assert feas["satisfied"] is True and feas["derived"] <= budget
    assert feas["argmax_satisfied"] is False and feas["argmax_derived"] > budget
    from hwnas.space.nb201 import NB201Space

    assert "conv" not in feas["genotype"]
    assert nb201_connected(NB201Space().encode(feas["genotype"]))[0]
    assert feas["genotype"] != feas["argmax_genotype"]
    plain = dsearch(dict(cfg, derivation="argmax"), tmp_path / "argmax", progress=False).summary
    assert plain["genotype"] == plain["argmax_genotype"] == feas["argmax_genotype"]
    assert plain["satisfied"] is False
    # the derivation is not part of the search: a finished run re-derives on resume
    again = dsearch(cfg, tmp_path / "argmax", resume=True, progress=False).summary
    assert again["genotype"] == feas["genotype"]


def test_satisfied_budget_lets_lambda_fall_to_zero(tmp_path) -> None:
    cfg = dict(TINY, constraint="params<=2e6", epochs=3, lambda_init=1.0, lambda_lr=0.3)
    res = dsearch(cfg, tmp_path / "loose", progress=False)
    lams = [r["lambda"] for r in res.history]
    assert all(r["expected"] < 2e6 for r in res.history)
    assert lams[0] < 1.0 and lams[-1] == 0.0 and min(lams) >= 0.0
    assert all(b <= a for a, b in itertools.pairwise(lams))
    assert res.summary["satisfied"] is True


# ---- soft penalties (ProxylessNAS, FBNet, MnasNet) ----------------------------------------
def test_penalized_objective_formulas() -> None:
    ce, r, b = torch.tensor(2.0), torch.tensor(3e5), 2e5
    assert float(penalized_objective(ce, r, b, "lagrange", lam=0.5)) == pytest.approx(2.25)
    assert float(penalized_objective(ce, r, b, "linear", weight=0.1)) == pytest.approx(2.05)
    assert float(penalized_objective(ce, r, b, "pow", exponent=0.07)) == pytest.approx(
        2.0 * 1.5**0.07
    )
    log = penalized_objective(ce, r, b, "log", exponent=0.6)
    assert float(log) == pytest.approx(2.0 * (math.log(3e5) / math.log(2e5)) ** 0.6)
    r.requires_grad_(True)
    for kind, w, e in (("linear", 0.1, None), ("log", None, 0.6), ("pow", None, 0.07)):
        (g,) = torch.autograd.grad(penalized_objective(ce, r, b, kind, weight=w, exponent=e), r)
        assert float(g) > 0, kind  # a larger expected resource always costs more
    # FBNet's form on latency in ms below 1 ms: computed in microseconds, finite
    lat = torch.tensor(0.004)
    v = penalized_objective(ce, lat, 3.0, "log", exponent=0.6, metric="latency")
    assert math.isfinite(float(v)) and float(v) > 0
    with pytest.raises(ValueError, match="exponent"):
        penalized_objective(ce, r.detach(), b, "pow")


def test_soft_penalty_search_moves_alpha_without_multiplier(tmp_path) -> None:
    cfg = dict(TINY, constraint="params<=8e4", epochs=3, arch_lr=0.1)
    res = dsearch(dict(cfg, penalty="linear", penalty_weight=5.0), tmp_path / "lin", progress=False)
    assert all(r["lambda"] is None for r in res.history)
    assert res.history[-1]["expected"] < res.history[0]["expected"]
    assert _conv_mass(res.alphas[0]) < 0.3  # uniform: 0.4
    s = res.summary
    assert s["penalty"] == {"kind": "linear", "weight": 5.0}
    assert s["lambda"] is None and s["satisfied"] == (s["derived"] <= 8e4)
    assert (tmp_path / "lin" / "search.png").read_bytes()[:4] == b"\x89PNG"
    # a negligible weight leaves alpha where the cross-entropy alone takes it
    weak = dsearch(dict(cfg, penalty="linear", penalty_weight=1e-6), tmp_path / "w", progress=False)
    assert _conv_mass(weak.alphas[0]) > _conv_mass(res.alphas[0])
    log = dsearch(dict(cfg, penalty="log"), tmp_path / "log", progress=False).summary
    assert log["penalty"] == {"kind": "log", "exponent": 0.6}
    base = dsearch(cfg, tmp_path / "lagrange", progress=False).summary
    assert base["penalty"]["kind"] == "lagrange" and base["lambda"] > 0


def test_soft_penalty_config_errors() -> None:
    with pytest.raises(HwnasError, match="needs a constraint"):
        DSearchConfig.from_dict({"penalty": "log"})
    with pytest.raises(HwnasError, match="soft penalties"):
        DSearchConfig.from_dict({"constraint": "params<=1e6", "penalty_weight": 0.5})
    with pytest.raises(HwnasError, match="no exponent"):
        DSearchConfig.from_dict(
            {"constraint": "params<=1e6", "penalty": "linear", "penalty_exponent": 1.0}
        )
    with pytest.raises(HwnasError, match="penalty"):
        DSearchConfig.from_dict({"constraint": "params<=1e6", "penalty": "quadratic"})
    with pytest.raises(HwnasError, match="takes no weight"):  # Adam ignores a loss scale
        DSearchConfig.from_dict(
            {"constraint": "params<=1e6", "penalty": "pow", "penalty_weight": 2.0}
        )
    for bad in (math.inf, math.nan):
        with pytest.raises(HwnasError, match="penalty_weight"):
            DSearchConfig.from_dict(
                {"constraint": "params<=1e6", "penalty": "linear", "penalty_weight": bad}
            )
    cfg = DSearchConfig.from_dict({"constraint": "params<=1e6", "penalty": "pow"})
    assert cfg.penalty_terms() == (None, 0.07)


def test_soft_penalty_divergence_stops_with_one_line(tmp_path) -> None:
    # (R/B)^1000 overflows: the search stops instead of deriving a cell from NaN alphas
    cfg = dict(TINY, constraint="params<=8e4", penalty="pow", penalty_exponent=1000.0)
    with pytest.raises(HwnasError, match=r"diverged at epoch 1, step 1.*--penalty-exponent"):
        dsearch(cfg, tmp_path / "nan", progress=False)
    assert not (tmp_path / "nan" / "summary.json").exists()


def test_resume_counts_missing_and_explicit_default_settings_as_defaults(tmp_path) -> None:
    from hwnas.dnas.search import CHECKPOINT_NAME

    cfg = dict(TINY, constraint="params<=3e5", epochs=2, penalty="log")
    dsearch(cfg, tmp_path / "r", progress=False, max_epochs=1)
    # the default exponent written out is the same search
    res = dsearch(dict(cfg, penalty_exponent=0.6), tmp_path / "r", resume=True, progress=False)
    assert len(res.history) == 2 and res.summary["penalty"] == {"kind": "log", "exponent": 0.6}
    # a checkpoint made before the penalty settings existed resumes as lagrange
    base = dict(TINY, constraint="params<=3e5", epochs=2)
    dsearch(base, tmp_path / "old", progress=False, max_epochs=1)
    p = tmp_path / "old" / CHECKPOINT_NAME
    ckpt = torch.load(p, weights_only=False)
    for k in ("penalty", "penalty_weight", "penalty_exponent"):
        del ckpt["config"][k]
    torch.save(ckpt, p)
    assert len(dsearch(base, tmp_path / "old", resume=True, progress=False).history) == 2
    with pytest.raises(HwnasError, match="other settings"):
        dsearch(dict(cfg, penalty="pow"), tmp_path / "r", resume=True, progress=False)


def test_resume_equals_uninterrupted(tmp_path) -> None:
    cfg = dict(TINY, constraint="params<=3e5", epochs=2, arch_lr=0.01)
    full = dsearch(cfg, tmp_path / "full", progress=False)
    part = dsearch(cfg, tmp_path / "part", progress=False, max_epochs=1)
    assert not (tmp_path / "part" / "summary.json").exists() and len(part.history) == 1
    rest = dsearch(cfg, tmp_path / "part", resume=True, progress=False)
    for a, b in zip(full.alphas, rest.alphas, strict=True):
        assert torch.equal(a, b)
    assert full.lam == rest.lam and full.genotype == rest.genotype
    lines = (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [0, 1]
    assert json.loads(lines[1])["train_loss"] == full.history[1]["train_loss"]
    with pytest.raises(HwnasError, match=r"other settings \(batch_size \d+ \(now 8\)\)"):
        dsearch(dict(cfg, batch_size=8), tmp_path / "part", resume=True, progress=False)


def test_darts_search_runs(tmp_path) -> None:
    cfg = dict(TINY, space="darts", layers=3, constraint="params<=2e6", bottleneck=1)
    res = dsearch(cfg, tmp_path / "darts", progress=False)
    s = res.summary
    assert set(s["genotype"]) == {"normal", "normal_concat", "reduce", "reduce_concat"}
    assert s["params"] == s["derived"] and s["flops"] > 0
    assert "nb201" not in s
    # the DARTS evaluation network (C=36, 20 cells) of the argmax cell exceeds 2e6 here;
    # the feasible rule (Lagrangian) returns a cell within it
    assert s["argmax_derived"] > 2e6 >= s["derived"] and s["satisfied"] is True


# ---- lookup graph ------------------------------------------------------------------------
def test_lookup_graph_interpolation(tmp_path) -> None:
    g = LookupGraph("params", [(1e5, 2e5), (2e5, 3e5), (3e5, 2.8e5), (4e5, 6e5), (2e5, 3.2e5)])
    xs, ys = g.curve()
    assert list(xs) == [1e5, 2e5, 3e5, 4e5]
    assert all(b >= a for a, b in itertools.pairwise(ys))  # isotonic
    assert ys[1] == ys[2] == pytest.approx(3.0e5)  # (3.1e5 mean, 2.8e5) pooled
    assert g.search_budget_for(2.5e5) == pytest.approx(1.5e5)
    assert g.search_budget_for(3e5) == pytest.approx(3e5)  # flat: the largest
    assert g.search_budget_for(4.5e5) == pytest.approx(3.5e5)
    with pytest.warns(UserWarning, match="below"):
        assert g.search_budget_for(1e5) == 1e5
    with pytest.warns(UserWarning, match="above"):
        assert g.search_budget_for(1e6) == 4e5
    with pytest.raises(HwnasError, match="below"):
        g.search_budget_for(1e5, strict=True)
    path = g.save(tmp_path / "lug.json")
    g2 = LookupGraph.load(tmp_path)
    assert g2.points == g.points and g2.search_budget_for(2.5e5) == pytest.approx(1.5e5)
    cfg = DSearchConfig.from_dict({"constraint": "params<=2.5e5", "lookup": str(path)})
    c, b, src = resolve_budgets(cfg)
    assert c.budget == 2.5e5 and b == pytest.approx(1.5e5) and src == "lookup"
    with pytest.raises(HwnasError, match="is for params"):
        resolve_budgets(DSearchConfig.from_dict({"constraint": "flops<=1e8", "lookup": str(path)}))
    darts_lug = LookupGraph("params", g.points, {"space": "darts"}).save(tmp_path / "d.json")
    with pytest.raises(HwnasError, match="built in the darts space"):
        resolve_budgets(
            DSearchConfig.from_dict({"constraint": "params<=2e5", "lookup": str(darts_lug)})
        )
    with pytest.raises(HwnasError, match="malformed"):
        (tmp_path / "bad.json").write_text('{"metric": "params"}')
        LookupGraph.load(tmp_path / "bad.json")


# ---- CLI ---------------------------------------------------------------------------------
def _tiny_flags() -> list[str]:
    flags = []
    for k, v in TINY.items():
        if k != "epochs":
            flags += [f"--{k.replace('_', '-')}", str(v)]
    return flags


def test_cli_end_to_end(tmp_path) -> None:
    from hwnas.cli import app

    runner = CliRunner()
    out = tmp_path / "run"
    args = ["dsearch", *_tiny_flags(), "--epochs", "1", "--constraint", "params<=3e5"]
    r = runner.invoke(app, [*args, "--out", str(out), "--no-progress"])
    assert r.exit_code == 0, r.output
    brief = json.loads(r.stdout.strip().splitlines()[-1])
    assert brief["budget"] == 3e5 and "nb201_index" in brief
    # the table's published accuracies are named as such (percent), not as this run's
    assert "test_acc" not in brief and 0 < brief["nb201_table_test_acc_pct"]["cifar10"] <= 100
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["channels"] == 4 and math.isfinite(summary["derived"])
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1
    png = (out / "search.png").read_bytes()
    assert brief["plot"] == str(out / "search.png") and png[:4] == b"\x89PNG" and len(png) > 10_000
    # resume of a finished run reads the saved config and just re-summarises
    r = runner.invoke(app, ["dsearch", "--out", str(out), "--resume", "--no-progress"])
    assert r.exit_code == 0, r.output
    # the same command without --resume (forgotten) is refused: it would delete the search
    r = runner.invoke(app, [*args, "--out", str(out), "--no-progress"])
    assert r.exit_code == 2 and "holds a finished dsearch" in r.stderr, r.output
    assert "--resume (resume=True) continues it" in r.stderr and "remove the folder" in r.stderr
    assert (out / "summary.json").is_file() and len(r.stderr.strip().splitlines()) == 1

    r = runner.invoke(app, ["dsearch", "--constraint", "params>=1", "--out", str(out)])
    assert r.exit_code == 2 and "upper bounds" in r.output
    assert r.output.strip().count("\n") == 0
    # one budget: a second --constraint (or a list in one) is refused, not dropped
    two = ["--constraint", "params<=6e5", "--constraint", "flops<=1e6"]
    r = runner.invoke(app, ["dsearch", *two, "--out", str(tmp_path / "two")])
    assert r.exit_code == 2 and "takes one --constraint" in r.output
    assert "params<=6e5, flops<=1e6" in r.output
    r = runner.invoke(app, ["dsearch", "--constraint", "params<=6e5,flops<=1e6", "--out", "y"])
    assert r.exit_code == 2 and "DCA-NAS takes one budget" in r.output
    r = runner.invoke(app, ["dsearch", "--constraint", "params<=1,000,000", "--out", "y"])
    assert r.exit_code == 2 and "without thousands separators, e.g. 1000000" in r.output
    r = runner.invoke(app, [*args, "--derivation", "best", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "derivation" in r.output
    r = runner.invoke(
        app, [*args, "--derivation", "argmax", "--out", str(tmp_path / "a"), "--no-progress"]
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.strip().splitlines()[-1])["derivation"] == "argmax"
    r = runner.invoke(
        app,
        [*args, "--penalty", "log", "--penalty-exponent", "0.3", "--out", str(tmp_path / "p"),
         "--no-progress"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    pen = json.loads(r.stdout.strip().splitlines()[-1])["penalty"]
    assert pen == {"kind": "log", "exponent": 0.3}
    bad = [*args, "--penalty", "linear", "--penalty-exponent", "2", "--out", str(tmp_path / "b")]
    r = runner.invoke(app, bad)
    assert r.exit_code == 2 and "no exponent" in r.output
    bad = [*args, "--penalty", "log", "--lambda-lr", "0.5", "--out", str(tmp_path / "b")]
    r = runner.invoke(app, bad)
    assert r.exit_code == 2 and "--lambda-lr is for the lagrange penalty" in r.output

    lug_dir = tmp_path / "lug"
    r = runner.invoke(
        app,
        ["dsearch", "lug", "--budgets", "1e5,3e5", "--jobs", "1", "--out", str(lug_dir),
         *_tiny_flags(), "--epochs", "1", "--constraint", "params<=1", "--no-progress"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    lug = json.loads((lug_dir / "lug.json").read_text())
    assert lug["metric"] == "params" and len(lug["points"]) == 2
    assert [p["search_budget"] for p in lug["points"]] == [1e5, 3e5]
    assert (lug_dir / "lug.png").read_bytes()[:4] == b"\x89PNG"
    assert not list(lug_dir.glob("sb_*/search.png"))  # the graph's own searches: no plots

    r = runner.invoke(app, ["dsearch", "--help"])
    assert r.exit_code == 0 and "--constraint" in r.output and "lug" in r.output


def test_search_independent_of_process_caches(tmp_path) -> None:
    """A search must not depend on what ran before it in the process: building the
    resource model with cold caches constructs modules (drawing from the global RNG),
    which must not shift the search network's initialisation."""
    from hwnas.dnas import resources, search

    cfg = dict(TINY, constraint="params<=3e5", arch_lr=0.05)
    resources.op_cost.cache_clear()
    search._load_train.cache_clear()
    cold = dsearch(cfg, tmp_path / "cold", progress=False)
    warm = dsearch(cfg, tmp_path / "warm", progress=False)
    for a, b in zip(cold.alphas, warm.alphas, strict=True):
        assert torch.equal(a, b)
    assert cold.history[0]["train_loss"] == warm.history[0]["train_loss"]


# ---- input checks and consistency (tester's findings) -------------------------------------
@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("fixed", float("nan")),
        ("fixed", -1.0),
        ("fixed", True),
        ("normal", -0.5),
        ("normal", float("inf")),
        ("normal", True),
        ("normal", "0.5"),
        ("reduce", [0.1] * 13 + [float("nan")]),
        ("reduce", [0.1] * 13 + [False]),
    ],
)
def test_darts_latency_table_rejects_bad_entries(tmp_path, where: str, value) -> None:
    ops = [o for o in DARTS_OPS if o != "none"]
    table = {"fixed": 1.0, "normal": dict.fromkeys(ops, 0.1), "reduce": dict.fromkeys(ops, 0.1)}
    if where == "fixed":
        table["fixed"] = value
    else:
        table[where]["sep_conv_3x3"] = value
    path = tmp_path / "lat.json"
    path.write_text(json.dumps(table))  # NaN/Infinity as JSON extensions, as json.loads reads
    with pytest.raises(HwnasError, match=r"must (hold numbers|be finite and >= 0)"):
        resource_model(
            parse_constraint("latency:pixel3<=5"), EvalNetConfig("darts"), latency_table=path
        )


def test_latency_table_must_exist_for_any_constraint(tmp_path) -> None:
    for c in ("params<=1e6", "latency:pixel3<=5"):
        with pytest.raises(HwnasError, match="latency table '.*nope.json' not found"):
            DSearchConfig.from_dict({"constraint": c, "latency_table": str(tmp_path / "nope.json")})


def test_config_range_checks() -> None:
    with pytest.raises(HwnasError, match=r"arch_betas.*\[0, 1\)"):
        DSearchConfig.from_dict({"arch_betas": [2, 0.9]})
    with pytest.raises(HwnasError, match=r"arch_betas.*\[0, 1\)"):
        DSearchConfig.from_dict({"arch_betas": [0.5, -0.1]})
    with pytest.raises(HwnasError, match="eval_resolution"):
        DSearchConfig.from_dict({"eval_resolution": 1, "constraint": "flops<=1e9"})
    assert DSearchConfig.from_dict({"arch_betas": [0.0, 0.99]}).arch_betas == (0.0, 0.99)


def test_derived_resource_refuses_partial_or_unknown_genotypes() -> None:
    model = resource_model("params", EvalNetConfig("darts", C=4, layers=5))
    short = DARTS_V2._replace(normal=DARTS_V2.normal[:4], normal_concat=[2, 3])
    with pytest.raises(HwnasError, match="needs 8 .* the normal cell has 4"):
        model.derived(short)
    bad = DARTS_V2._replace(reduce=[("conv_9x9", 0), *DARTS_V2.reduce[1:]])
    with pytest.raises(HwnasError, match="unknown darts op 'conv_9x9'"):
        model.derived(bad)


@pytest.mark.parametrize("size", [5, 9])
def test_odd_image_sizes_halve_by_ceil_as_the_resource_model(size: int) -> None:
    from hwnas.dnas.evalnet import DartsNetworkCIFAR, NB201Network
    from hwnas.measure.cost import count_flops

    for space, layers in (("darts", 3), ("nb201", 1)):
        net = SearchNetwork(space, C=4, layers=layers, num_classes=10, in_channels=3)
        assert net(torch.zeros(2, 3, size, size)).shape == (2, 10)
    fr = FactorizedReduce(4, 8).eval()
    assert fr(torch.zeros(1, 4, size, size)).shape[-1] == (size + 1) // 2
    x = torch.randn(1, 4, size + 1, size + 1).relu()  # even sides: DARTS' slicing exactly
    darts = torch.cat([fr.conv_1(x), fr.conv_2(x[:, :, 1:, 1:])], dim=1)
    assert torch.equal(fr(x), fr.bn(darts))
    arch = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|none~2|"
    for net, cell, cfg in (
        (NB201Network(arch, 4, 1), arch, EvalNetConfig("nb201", 4, 1, resolution=size)),
        (
            DartsNetworkCIFAR(DARTS_V2, 4, 5),
            DARTS_V2,
            EvalNetConfig("darts", 4, 5, resolution=size),
        ),
    ):
        flops = count_flops(net.eval(), (3, size, size))["flops"]
        assert resource_model("flops", cfg).derived(cell) == flops
        assert resource_model("params", cfg).derived(cell) == sum(
            p.numel() for p in net.parameters()
        )


def test_lookup_run_dirs_are_lossless(tmp_path) -> None:
    from hwnas.dnas.lookup import run_dir

    assert run_dir(tmp_path, 1e6) != run_dir(tmp_path, 1000001.0)
    assert run_dir(tmp_path, 2e5).name == "sb_200000"
    assert run_dir(tmp_path, 1.5e-5).name == "sb_1.5e-05"
    # a run of an older graph (6 significant digits) is reused only for its own budget
    old = tmp_path / "sb_1e+06"
    old.mkdir()
    (old / "config.json").write_text(json.dumps({"search_budget": 1e6}))
    assert run_dir(tmp_path, 1e6) == old
    assert run_dir(tmp_path, 1000001.0).name == "sb_1000001"
    (old / "config.json").write_text(json.dumps({"search_budget": 1000001.0}))
    assert run_dir(tmp_path, 1e6).name == "sb_1000000"


def test_lookup_graph_of_another_evaluation_network_is_refused(tmp_path) -> None:
    pts = [(1e5, 2e5), (3e5, 4e5)]

    def lug(**config) -> str:
        base = DSearchConfig.from_dict({"constraint": "params<=1"}).model_dump()
        meta = {"space": "nb201", "dataset": "cifar10", "config": {**base, **config}}
        return str(LookupGraph("params", pts, meta).save(tmp_path / "lug.json"))

    search = {"constraint": "params<=2.5e5"}
    # default C=16, N=5 given explicitly is the same network
    path = lug(eval_channels=16, eval_layers=5)
    assert resolve_budgets(DSearchConfig.from_dict({**search, "lookup": path}))[2] == "lookup"
    for field_, value in (("eval_channels", 8), ("eval_layers", 2), ("dataset", "digits")):
        path = lug(**{field_: value})
        with pytest.raises(HwnasError, match=f"another evaluation network or dataset: {field_}"):
            resolve_budgets(DSearchConfig.from_dict({**search, "lookup": path}))
    path = lug(eval_channels=8, dataset="digits")
    cfg = DSearchConfig.from_dict(
        {**search, "lookup": path, "eval_channels": 8, "dataset": "digits"}
    )
    assert resolve_budgets(cfg)[2] == "lookup"
    # the graph maps budgets through searches with its penalty: another one is refused,
    # the same one (its default written out or not) is not; an older graph is lagrange's
    path = lug(penalty="linear")
    with pytest.raises(HwnasError, match="another penalty \\(penalty linear, penalty_weight 0.1"):
        resolve_budgets(DSearchConfig.from_dict({**search, "lookup": path}))
    for pen in ({"penalty": "linear"}, {"penalty": "linear", "penalty_weight": 0.1}):
        assert resolve_budgets(DSearchConfig.from_dict({**search, "lookup": path, **pen}))[2]
    with pytest.raises(HwnasError, match="another penalty"):
        cfg = {**search, "lookup": path, "penalty": "linear", "penalty_weight": 0.5}
        resolve_budgets(DSearchConfig.from_dict(cfg))
    base = DSearchConfig.from_dict({"constraint": "params<=1"}).model_dump()
    for k in ("penalty", "penalty_weight", "penalty_exponent"):
        del base[k]
    meta = {"space": "nb201", "dataset": "cifar10", "config": base}
    path = str(LookupGraph("params", pts, meta).save(tmp_path / "old.json"))
    assert resolve_budgets(DSearchConfig.from_dict({**search, "lookup": path}))[2] == "lookup"
    with pytest.raises(HwnasError, match="another penalty"):
        resolve_budgets(DSearchConfig.from_dict({**search, "lookup": path, "penalty": "log"}))


def test_a_budget_no_cell_meets_is_refused_before_the_search(tmp_path) -> None:
    """A latency budget only disconnected NB201 cells meet, or a DARTS params budget below
    its cheapest cell: refused before any training (the search ran to the end and
    exited 0 with the argmax cell, 'satisfied': false)."""
    cfg = dict(TINY, constraint="latency:pixel3<=0.05")
    with pytest.raises(HwnasError, match=r"no connected cell of nb201 meets latency:pixel3<=0.05"):
        dsearch(cfg, tmp_path / "lat", progress=False)
    assert not (tmp_path / "lat" / "checkpoint.pt").exists()
    rm = resource_model("params", EvalNetConfig(space="darts", C=4, layers=3, num_classes=10))
    least = rm.cheapest()
    alphas = [torch.zeros(14, 8), torch.zeros(14, 8)]
    cheapest = derive_darts_within(*alphas, rm.tables, rm.fixed, least)  # exactly at it
    assert cheapest is not None and rm.predicted(cheapest) <= least
    assert derive_darts_within(*alphas, rm.tables, rm.fixed, least * 0.999) is None
    bad = dict(TINY, space="darts", layers=3, channels=4, constraint=f"params<={least * 0.999:.6g}")
    bad.update(eval_channels=4, eval_layers=3)
    with pytest.raises(HwnasError, match=r"no cell of darts meets params<="):
        dsearch(bad, tmp_path / "darts", progress=False)


def test_cli_lug_takes_a_latency_table(tmp_path) -> None:
    from hwnas.cli import app

    runner = CliRunner()
    r = runner.invoke(app, ["dsearch", "lug", "--help"])
    assert r.exit_code == 0
    for opt in ("--latency-table", "--eval-channels", "--eval-layers"):
        assert opt in r.output
    ops = [o for o in DARTS_OPS if o != "none"]
    table = tmp_path / "lat.json"
    bad = {"fixed": -1.0, "normal": dict.fromkeys(ops, 0.1), "reduce": dict.fromkeys(ops, 0.1)}
    table.write_text(json.dumps(bad))
    args = ["dsearch", "lug", "--budgets", "1,2", "--out", str(tmp_path / "lug"),
            "--space", "darts", "--dataset", "digits", "--constraint", "latency:pixel3<=1",
            "--no-progress"]  # fmt: skip
    r = runner.invoke(app, args)
    assert r.exit_code == 2 and "needs a per-op latency table" in r.output
    # the table reaches the searches: its bad entry is what stops them
    r = runner.invoke(app, [*args, "--latency-table", str(table)])
    assert r.exit_code == 2 and "fixed must be finite and >= 0" in r.output, r.output


# ---- one writer per output directory, interrupts ------------------------------------------
def test_a_second_search_or_graph_on_a_locked_out_dir_is_refused(tmp_path, held_elsewhere) -> None:
    from hwnas.dnas.lookup import build_lookup_graph

    cfg = dict(TINY, constraint="params<=3e5")
    with held_elsewhere(tmp_path / "s", "training"):
        with pytest.raises(HwnasError, match=r"in use by another hwnas run \(training"):
            dsearch(cfg, tmp_path / "s", progress=False)
        assert not (tmp_path / "s" / "config.json").exists()
    with held_elsewhere(tmp_path / "g", "profile"):
        with pytest.raises(HwnasError, match=r"in use by another hwnas run \(profile"):
            build_lookup_graph(cfg, [1e5], tmp_path / "g")
        assert not list((tmp_path / "g").glob("sb_*"))


def test_lookup_graph_workers_die_with_their_parent(tmp_path, monkeypatch) -> None:
    """The pool's workers get ``die_with_parent`` (an importable function, so the spawn
    context can send it) with this process's id."""
    import os
    import pickle
    from concurrent.futures import Future

    from hwnas.dnas import lookup
    from hwnas.process import die_with_parent

    seen: dict = {}

    class Pool:  # runs the tasks inline, records how the pool was made
        def __init__(self, **kwargs) -> None:
            seen.update(kwargs)

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            pass

        def submit(self, fn, *args) -> Future:
            f: Future = Future()
            f.set_result(fn(*args))
            return f

    def run_one(config: dict, out_dir: str) -> dict:
        b = config["search_budget"]
        return {"search_budget": b, "derived": b, "run_dir": out_dir}

    monkeypatch.setattr(lookup, "ProcessPoolExecutor", Pool)
    monkeypatch.setattr(lookup, "_run_one", run_one)
    cfg = dict(TINY, constraint="params<=1", plot=False)
    lug = lookup.build_lookup_graph(cfg, [1e5, 2e5], tmp_path, jobs=2)
    assert len(lug.points) == 2
    assert seen["initializer"] is die_with_parent and seen["initargs"] == (os.getpid(),)
    assert pickle.loads(pickle.dumps(die_with_parent)) is die_with_parent


def test_kills_around_the_metrics_line_leave_a_consistent_log(tmp_path, monkeypatch) -> None:
    """The epoch's line is written before its checkpoint; a resume rewrites metrics.jsonl
    to the checkpoint's epochs (no line lost, none repeated, a torn one dropped)."""
    from hwnas.dnas import search

    cfg = dict(TINY, constraint="params<=3e5", epochs=2, plot=False)
    out = tmp_path / "run"
    metrics = out / "metrics.jsonl"
    dsearch(cfg, out, progress=False, max_epochs=1)
    save = search._save

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(search, "_save", killed)  # killed before epoch 1's checkpoint
    with pytest.raises(KeyboardInterrupt):
        dsearch(cfg, out, resume=True, progress=False)
    assert [json.loads(x)["epoch"] for x in metrics.read_text().splitlines()] == [0, 1]
    monkeypatch.setattr(search, "_save", save)
    with metrics.open("a") as f:
        f.write('{"epoch": 2, "train_lo')  # and a line torn by a kill
    res = dsearch(cfg, out, resume=True, progress=False)
    assert [json.loads(x) for x in metrics.read_text().splitlines()] == res.history
    assert [r["epoch"] for r in res.history] == [0, 1]


def test_cli_interrupt_says_how_to_continue(tmp_path, monkeypatch, held_elsewhere) -> None:
    """Ctrl-C: one line with the command that continues (the same options and --resume),
    exit 130; a run without --resume says that it discards an unfinished search."""
    from hwnas.cli import app
    from hwnas.dnas import lookup, search

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(search, "dsearch", interrupted)
    monkeypatch.setattr(lookup, "build_lookup_graph", interrupted)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "my run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"unfinished")
    runner = CliRunner()
    args = ["dsearch", "--out", str(out), "--epochs", "3", "--constraint", "params<=3e5"]
    r = runner.invoke(app, [*args, "--no-progress"])
    assert r.exit_code == 130, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 2 and "unfinished dsearch" in lines[0] and "--resume" in lines[0]
    assert lines[1] == (
        f"interrupted; continue with: hwnas dsearch --out '{out}' --constraint 'params<=3e5' "
        "--epochs 3 --no-progress --resume"
    )
    with held_elsewhere(out):  # refused by the lock: it discards nothing, so no note
        r = runner.invoke(app, [*args, "--no-progress"])
    assert r.exit_code == 2 and "in use by another" in r.stderr
    assert "unfinished" not in r.stderr
    r = runner.invoke(app, ["dsearch", "--out", str(out), "--resume"])
    assert r.exit_code == 130
    assert r.stderr.strip() == f"interrupted; continue with: hwnas dsearch --out '{out}' --resume"
    r = runner.invoke(app, ["dsearch", "lug", "--budgets", "1e5", "--out", "g", *args[3:]])
    assert r.exit_code == 130 and r.stderr.strip() == (
        "interrupted; continue with: hwnas dsearch lug --budgets 1e5 --out g "
        "--constraint 'params<=3e5' --epochs 3"
    )


def test_settings_a_search_would_ignore_or_crash_on_are_refused(tmp_path) -> None:
    table = tmp_path / "lat.json"
    table.write_text("{}")
    for bad, match in (
        ({"seed": -1}, "seed"),
        ({"seed": 2**32}, "seed"),
        ({"constraint": "params<=2e5", "latency_table": str(table)}, "here it would be ignored"),
        (
            {"constraint": "latency:pixel3<=4", "eval_channels": 64, "eval_layers": 2},
            r"network \(C=16, N=5\), not of one with eval_channels=64, eval_layers=2",
        ),
    ):
        with pytest.raises(HwnasError, match=match):
            DSearchConfig.from_dict({**TINY, **bad})
    # the benchmark's own network, said explicitly, is fine
    DSearchConfig.from_dict({**TINY, "constraint": "latency:pixel3<=4", "eval_channels": 16})


def test_cli_refuses_a_resume_of_nothing_and_options_before_lug(tmp_path) -> None:
    from hwnas.cli import app

    runner = CliRunner()
    r = runner.invoke(app, ["dsearch", "--out", str(tmp_path / "typo"), "--resume"])
    assert r.exit_code == 2 and "nothing to resume in" in r.stderr, r.output
    assert not (tmp_path / "typo").exists()  # no default 50-epoch search started there
    args = ["dsearch", "--space", "darts", "--epochs", "7", "lug", "--budgets", "1e5"]
    r = runner.invoke(app, [*args, "--constraint", "params<=1", "--out", str(tmp_path / "g")])
    assert r.exit_code == 2, r.output
    assert "--space, --epochs before 'lug' would be ignored: give them after it" in r.stderr


def test_an_nb201_search_without_the_table_still_writes_its_summary(tmp_path) -> None:
    """A params budget needs no NB201 table: without one the search ends with its summary
    and a warning (it trained to the end, then failed with no summary)."""
    cfg = dict(TINY, dataset="digits", constraint="params<=2e5", data_dir=str(tmp_path / "x"))
    with pytest.warns(UserWarning, match="leaves out the found cell's NAS-Bench-201 facts"):
        res = dsearch(cfg, tmp_path / "run", progress=False)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert "nb201" not in summary and summary["satisfied"] is True
    assert res.summary["derived"] <= 2e5


def test_the_package_hands_out_functions_not_modules():
    """``from hwnas.dnas import dtrain`` / ``derive`` are the functions, however often
    and in whatever order they are asked for (modules of those names shadowed them)."""
    import importlib

    import hwnas.dnas as dnas

    importlib.import_module("hwnas.dnas.training")
    importlib.import_module("hwnas.dnas.derivation")
    for _ in range(2):
        for name in ("dtrain", "derive", "dsearch"):
            assert callable(getattr(dnas, name)) and not isinstance(
                getattr(dnas, name), type(dnas)
            ), name


# ---- user report: latency on other data, longer runs, finished runs, logs, help -------------
def test_an_nb201_latency_budget_on_other_data_is_refused(tmp_path) -> None:
    """The NB201 latencies are of the benchmark's 3x32x32 CIFAR network: a budget on
    digits (1x8x8) was reported 'satisfied' by a number about another network."""
    cfg = dict(TINY, dataset="digits", constraint="latency:pixel3<=4")
    with pytest.raises(HwnasError, match=r"3x32x32 CIFAR network, but digits is 1x8x8"):
        dsearch(cfg, tmp_path / "d", progress=False)
    assert not (tmp_path / "d" / "checkpoint.pt").exists()
    with pytest.raises(HwnasError, match="not of one at eval_resolution=16"):
        DSearchConfig.from_dict({**TINY, "constraint": "latency:pixel3<=4", "eval_resolution": 16})
    assert DSearchConfig.from_dict({**TINY, "space": "NB201"}).space == "nb201"


def test_resume_with_more_epochs_and_a_finished_search_kept(tmp_path, monkeypatch) -> None:
    """More epochs on resume stretch the weights' cosine from the step reached (as
    'hwnas train'); fewer than run are refused; a new search over a finished one is
    refused instead of deleting it; the plot has no offset notation."""
    import matplotlib

    from hwnas.report import plots

    cfg = dict(TINY, constraint="params<=3e5", epochs=1)
    out = tmp_path / "run"
    dsearch(dict(cfg, plot=False), out, progress=False)
    with pytest.raises(HwnasError, match="holds a finished dsearch .*--resume"):
        dsearch(cfg, out, progress=False)
    offsets: list = []

    def plot(*args, **kwargs):  # the entropy axis read '1e-7+1.609437'
        offsets.append(matplotlib.rcParams["axes.formatter.useoffset"])

    monkeypatch.setattr(plots, "plot_dsearch", plot)
    lines: list[str] = []
    res = dsearch(dict(cfg, epochs=3), out, resume=True, progress=False, log=lines.append)
    assert offsets == [False]
    assert [r["epoch"] for r in res.history] == [0, 1, 2] and res.summary["config"]["epochs"] == 3
    full = dsearch(dict(cfg, epochs=3, plot=False), tmp_path / "full", progress=False)
    assert res.history[1]["lr"] == pytest.approx(full.history[1]["lr"], rel=1e-9)
    assert lines[1] == "dsearch: searching from epoch 1 to 3 epochs of 2 steps"
    assert [x.split(":")[0] for x in lines[2:]] == ["epoch 1", "epoch 2"]
    with pytest.raises(HwnasError, match="already holds 3 epochs, more than epochs 2"):
        dsearch(dict(cfg, epochs=2), out, resume=True, progress=False)


def test_cli_plain_lines_flags_in_errors_and_help(tmp_path, monkeypatch) -> None:
    """--no-progress: a line at the start, one unwrapped line per epoch; an invalid flag
    value names the flag; --help documents the latency table; Ctrl-C before anything
    was saved says to run the same command again."""
    from hwnas.cli import app
    from hwnas.dnas import search

    runner = CliRunner()
    out = tmp_path / "run"
    args = ["dsearch", *_tiny_flags(), "--space", "NB201", "--epochs", "1",
            "--constraint", "params<=3e5", "--out", str(out), "--no-progress"]  # fmt: skip
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    err = r.stderr.splitlines()
    assert err[0].startswith("dsearch: loading cifar10, building the params resource model")
    assert err[1] == "dsearch: searching to 1 epochs of 2 steps"
    assert err[2].startswith("epoch 0: train ") and " derived " in err[2] and len(err) == 3
    r = runner.invoke(app, [*args[:-3], "--steps-per-epoch", "0", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "invalid value for --steps-per-epoch: " in r.stderr, r.output
    r = runner.invoke(app, ["dsearch", "--help"], env={"COLUMNS": "300"})
    assert '"normal": {OP: MS' in r.output and "list of 14" in r.output
    assert "the output is one JSON line anyway" not in r.output

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(search, "dsearch", interrupted)
    fresh = tmp_path / "fresh"
    r = runner.invoke(app, ["dsearch", "--out", str(fresh), "--epochs", "3"])
    assert r.exit_code == 130
    assert r.stderr.strip() == (
        f"interrupted; nothing was saved yet; run it again: hwnas dsearch --out {fresh} --epochs 3"
    )
