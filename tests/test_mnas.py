"""MnasNet's latency-aware reward searched by regularized evolution (``mnas``)."""

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from hwnas.bench.base import Evaluator, Objective
from hwnas.cli import app
from hwnas.errors import HwnasError
from hwnas.search import Constraint, SearchProblem, run_search
from hwnas.search.mnas import MnasSearch, mnas_reward
from hwnas.search.runner import resume_search
from hwnas.search.spec import build_algorithm
from hwnas.space import get_space


def test_reward_is_mnasnets_formula():
    q = np.array([90.0, 90.0, 80.0, 70.0, 70.0])
    c = np.array([2.0, 8.0, 4.0, 0.0, np.nan])
    soft = mnas_reward(q, c, 4.0, -0.07, -0.07)
    np.testing.assert_allclose(soft[:3], [90 * 0.5**-0.07, 90 * 2**-0.07, 80.0])
    assert np.isnan(soft[3:]).all()  # no positive cost: no reward
    hard = mnas_reward(q, c, 4.0, 0.0, -1.0)
    np.testing.assert_allclose(hard[:3], [90.0, 45.0, 80.0])  # accuracy alone under T


def _nb201_target(device: str, q: float) -> tuple[float, float]:
    """A latency target on the exact front and the best accuracy within it."""
    from hwnas.bench import get_benchmark

    p = SearchProblem(get_benchmark("nb201", devices=device), 1)
    lat = np.sort(p.exact.F[:, 1])
    t = float(lat[int(q * (len(lat) - 1))])
    return t, float(-p.exact.F[p.exact.F[:, 1] <= t, 0].min())


def _best_within(spec: str, target: float, seed: int, budget: int) -> float:
    from hwnas.bench import get_benchmark

    problem = SearchProblem(
        get_benchmark("nb201", devices="pixel3"),
        budget,
        constraints=[Constraint.parse(f"latency<={target!r}")],
    )
    build_algorithm(spec, seed).run(problem)
    raw = np.array(problem.raw)
    assert problem.n_evaluated == budget
    return float(raw[raw[:, 1] <= target, 0].max())


def test_hard_target_finds_a_better_network_within_the_target_than_random(data_dir):
    """The evolution under MnasNet's hard reward gets closer to the best cell within a
    latency target than random search with the same budget and constraint."""
    target, best = _nb201_target("pixel3", 0.5)
    regret = {
        spec: np.mean([best - _best_within(spec, target, s, 120) for s in range(6)])
        for spec in ("random", "mnas[alpha=0,beta=-1]")
    }
    assert regret["mnas[alpha=0,beta=-1]"] < 0.6 * regret["random"], regret


def test_children_are_one_choice_mutations_of_evaluated_parents(data_dir):
    s = run_search({"algorithm": "mnas[pop_size=12]", "evaluations": 60, "seed": 2})
    assert s["evaluations"] == 60
    from hwnas.bench import get_benchmark

    problem = SearchProblem(get_benchmark("nb201", devices="pixel3"), 60)
    alg = MnasSearch(seed=2, pop_size=12)
    alg.run(problem)
    V = np.array(problem.vectors)
    assert len({tuple(v) for v in V}) == 60
    for k in range(12, 60):  # after the first population: one choice from an earlier one
        assert ((V[:k] != V[k]).sum(axis=1) == 1).any(), k


def test_summary_reports_target_and_best(tmp_path, data_dir):
    s = run_search(
        {"algorithm": "mnas[alpha=0,beta=-1]", "evaluations": 50, "seed": 1}, out=tmp_path
    )
    m = s["mnas"]
    df = pd.read_csv(tmp_path / "evaluations.csv")
    first = df.iloc[:10]  # the first population (default size 10 at this budget)
    assert m["target"] == pytest.approx(np.median(first["latency"]))
    within = df[df["latency"] <= m["target"]]
    assert m["best_within_target"]["accuracy"] == within["accuracy"].max()
    assert m["best_reward"]["accuracy"] == within["accuracy"].max()  # hard: accuracy under T
    assert m["best_within_target"]["arch_key"] in set(within["arch_key"])
    assert json.loads((tmp_path / "summary.json").read_text())["mnas"] == m
    from hwnas.bench import get_benchmark

    _, vals = get_benchmark("nb201", devices="pixel3").table()
    assert m["table_best_within_target"] == vals[vals[:, 1] <= m["target"], 0].max()
    hist = m["best_within_target_history"]  # what progress.png's second panel draws
    assert len(hist) == 50 and hist[-1] == within["accuracy"].max()
    running = df["accuracy"].where(df["latency"] <= m["target"]).cummax().ffill()
    assert [None if np.isnan(v) else v for v in running] == hist
    from PIL import Image

    assert Image.open(tmp_path / "progress.png").size[1] > 500  # two panels


def test_soft_reward_trades_accuracy_for_speed(data_dir):
    """With MnasNet's soft exponent the best by reward may be a faster, less accurate
    network than the best within the target; with w = 0 everywhere it is the most
    accurate within the target."""
    base = {"evaluations": 80, "seed": 0}
    soft = run_search({**base, "algorithm": "mnas[target=5]"})["mnas"]
    assert soft["target"] == 5.0
    best = soft["best_reward"]
    assert best["reward"] == pytest.approx(best["accuracy"] * (best["latency"] / 5.0) ** -0.07)
    assert best["latency"] <= soft["best_within_target"]["latency"]


def test_resume_with_a_larger_budget_equals_an_uninterrupted_run(tmp_path, data_dir):
    cfg = {"algorithm": "mnas[alpha=0,beta=-1]", "seed": 4}
    run_search({**cfg, "evaluations": 40}, out=tmp_path / "a")
    a = resume_search(tmp_path / "a", evaluations=80)
    b = run_search({**cfg, "evaluations": 80}, out=tmp_path / "b")
    ka = pd.read_csv(tmp_path / "a" / "evaluations.csv")["arch_key"].tolist()
    kb = pd.read_csv(tmp_path / "b" / "evaluations.csv")["arch_key"].tolist()
    assert ka == kb and len(set(ka)) == 80
    assert a["mnas"] == b["mnas"]


class TwoCosts(Evaluator):
    """Two minimised objectives: no accuracy for MnasNet's reward."""

    def __init__(self) -> None:
        self.space = get_space("nb201")
        self.objectives = [Objective("a"), Objective("b")]

    def evaluate(self, vectors):
        return np.atleast_2d(vectors)[:, :2].astype(float)


def test_refusals(data_dir):
    with pytest.raises(HwnasError, match="takes exactly 2 objectives, got 3"):
        run_search(
            {
                "algorithm": "mnas",
                "evaluations": 20,
                "benchmark_options": {"devices": ["pixel3", "fpga"]},
            }
        )
    with pytest.raises(HwnasError, match="target must be a positive number"):
        run_search({"algorithm": "mnas[target=-1]", "evaluations": 20})
    with pytest.raises(HwnasError, match="alpha and beta must be <= 0 .got 0.5, -0.07."):
        build_algorithm("mnas[alpha=0.5]")
    with pytest.raises(HwnasError, match="sample_size must be >= 1"):
        build_algorithm("mnas[sample_size=0]")
    with pytest.raises(HwnasError, match="one maximised objective"):
        MnasSearch().check(SearchProblem(TwoCosts(), 10))


def test_cli_prints_the_best_within_the_target(tmp_path, data_dir):
    res = CliRunner().invoke(
        app,
        [
            "search",
            *("--algorithm", "mnas[target=4,alpha=0,beta=-1]"),
            *("--evaluations", "40", "--out", str(tmp_path)),
        ],
        env={"COLUMNS": "200"},
    )
    assert res.exit_code == 0, res.output
    assert "mnas target 4 (reward: accuracy x (cost / target)^w, w = 0 within, -1 beyond)" in (
        res.stdout
    )
    m = json.loads((tmp_path / "summary.json").read_text())["mnas"]
    assert f"best within target: {m['best_within_target']['arch']}" in res.stdout
    assert f"in the whole table: {m['table_best_within_target']:.4g}" in res.stdout
    # nothing meets the constraint: the answer still says what mnas looked for
    res = CliRunner().invoke(
        app,
        [
            "search",
            *("--algorithm", "mnas[target=4]", "--constraint", "latency<=0.0035"),
            *("--evaluations", "20", "--out", str(tmp_path / "none")),
        ],
        env={"COLUMNS": "200"},
    )
    assert res.exit_code == 4, res.output  # nothing meets the constraint
    assert "none of the 20 evaluated architectures satisfies latency<=0.0035" in res.stdout
    assert "best within target: none of the 20 evaluated within the target" in res.stdout
