import json
import warnings

import numpy as np
import pytest

from hwnas.bench.base import Evaluator, Objective
from hwnas.errors import HwnasError, SetupError
from hwnas.registry import ALGORITHMS
from hwnas.search import Constraint, SearchProblem, run_search
from hwnas.search.efficiency import checkpoints, efficiency_table, search_efficiency
from hwnas.search.inner import vectorized_nsga2
from hwnas.search.linas import LINAS, hvi_2d, rank_weights
from hwnas.search.pareto import hypervolume, non_dominated_mask
from hwnas.search.spec import (
    build_algorithm,
    parse_algorithm,
    parse_options,
    resolve_algorithm,
    split_algorithms,
)
from hwnas.space import get_space
from hwnas.space.base import Dimension, SearchSpace

ALL = [
    "random",
    "nsga2",
    "agemoea",
    "unsga3",
    "moead",
    "ctaea",
    "motpe",
    "nsga2-optuna",
    "linas",
    "mnas",
]


def test_all_algorithms_registered():
    assert set(ALL) <= set(ALGORITHMS.names())


@pytest.mark.parametrize("algorithm", ALL)
def test_every_algorithm_end_to_end(algorithm, tmp_path, data_dir):
    s = run_search(
        {
            "benchmark": "nb201",
            "benchmark_options": {"devices": "pixel3"},
            "algorithm": algorithm,
            "evaluations": 40,
            "seed": 1,
        },
        out=tmp_path,
    )
    assert s["evaluations"] == 40
    assert len(s["hv_history"]) == 40 and len(s["hv_fraction_history"]) == 40
    assert 0.5 < s["hv_fraction"] <= 1.0 + 1e-9
    assert np.all(np.diff(s["hv_fraction_history"]) >= -1e-12)  # never decreases
    keys = [p["arch_key"] for p in s["pareto"]]
    assert len(keys) == len(set(keys)) >= 1
    for name in ("results.sqlite", "evaluations.csv", "pareto.csv", "summary.json"):
        assert (tmp_path / name).is_file()
    for name in ("pareto.png", "progress.png"):
        assert (tmp_path / name).stat().st_size > 5000
    summary = json.loads((tmp_path / "summary.json").read_text())
    for key in (
        "evaluations",
        "hypervolume",
        "exact_hypervolume",
        "hv_fraction",
        "front_recall",
        "igd",
        "hv_history",
        "pareto",
        "wall_time_s",
        "search_overhead_s",
    ):
        assert key in summary
    lines = (tmp_path / "evaluations.csv").read_text().splitlines()
    assert len(lines) == 41  # header + one row per distinct architecture


SMALL_LINAS = {"inner_pop": 100, "inner_generations": 15}
# the same as an algorithm name: where a test needs LINAS's loop, not its inner search's
# reach (a fifth of the default's 20,000 candidates, about half the time)
FAST_LINAS = "linas[inner_pop=100,inner_generations=15]"


def test_pareto_is_of_measured_architectures(nb201_pixel3):
    s = run_search(
        {
            "benchmark": "nb201",
            "algorithm": "linas",
            "algorithm_options": SMALL_LINAS,
            "evaluations": 60,
            "seed": 0,
        }
    )
    sp = nb201_pixel3.space
    for p in s["pareto"]:
        acc, lat = nb201_pixel3.evaluate(np.array([p["vector"]]))[0]
        assert p["accuracy"] == acc and p["latency"] == lat
    F = np.array([[-p["accuracy"], p["latency"]] for p in s["pareto"]])
    assert non_dominated_mask(F).all()
    assert all(sp.keys(np.array(p["vector"]))[0] == p["arch_key"] for p in s["pareto"])


@pytest.mark.parametrize("algorithm", ["random", "nsga2", "linas", "motpe", "ctaea", "mnas"])
def test_constraints_respected(algorithm, data_dir):
    s = run_search(
        {
            "benchmark": "nb201",
            "algorithm": algorithm,
            "algorithm_options": SMALL_LINAS if algorithm == "linas" else {},
            "evaluations": 50,
            "seed": 0,
            "constraints": ["latency<=5"],
        }
    )
    assert s["pareto"] and all(p["latency"] <= 5 for p in s["pareto"])
    assert s["constraints"] == ["latency<=5.0"] or s["constraints"] == ["latency<=5"]


def test_moead_refuses_constraints(data_dir, tmp_path):
    with pytest.raises(HwnasError, match="does not support constraints"):
        run_search(
            {"algorithm": "moead", "evaluations": 20, "constraints": ["latency<=5"]},
            out=tmp_path / "run",
        )
    assert not (tmp_path / "run").exists()  # a refused search leaves no run behind


def test_three_objectives_and_objective_limits(data_dir, tmp_path):
    cfg = {
        "benchmark_options": {"devices": ["pixel3", "fpga"]},
        "evaluations": 40,
        "seed": 0,
    }
    for alg in ("linas", "unsga3", "motpe"):
        opts = SMALL_LINAS if alg == "linas" else {}
        s = run_search({**cfg, "algorithm": alg, "algorithm_options": opts})
        assert len(s["objectives"]) == 3 and s["evaluations"] == 40
    four = {**cfg, "benchmark_options": {"devices": ["pixel3", "fpga", "raspi4"]}}
    with pytest.raises(HwnasError, match="takes 1 to 3 objectives"):
        run_search({**four, "algorithm": "nsga2"}, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_bad_constraint_and_options(data_dir):
    with pytest.raises(HwnasError, match="bad constraint .* NAME<=BOUND or NAME>=BOUND"):
        Constraint.parse("latency < 5")
    with pytest.raises(HwnasError, match="unknown objective"):
        run_search({"evaluations": 5, "constraints": ["energy<=5"]})
    with pytest.raises(HwnasError, match="unknown algorithm"):
        run_search({"algorithm": "simulated-annealing", "evaluations": 5})
    with pytest.raises(HwnasError, match="bad search config"):
        run_search({"evaluations": 0})
    with pytest.raises(HwnasError, match="bad options"):
        run_search({"algorithm": "random", "algorithm_options": {"nope": 1}, "evaluations": 5})


def test_algorithm_specs_with_options():
    assert split_algorithms("random, linas[class_mean=false,kappa=1],nsga2") == [
        "random",
        "linas[class_mean=false,kappa=1]",
        "nsga2",
    ]
    assert parse_algorithm("linas") == ("linas", {})
    assert parse_algorithm("linas[class_mean=false,kappa=1.5,selection=hvi]") == (
        "linas",
        {"class_mean": False, "kappa": 1.5, "selection": "hvi"},
    )
    assert parse_algorithm('linas[predictors=["mlp","ridge"],kappa=0]') == (
        "linas",
        {"predictors": ["mlp", "ridge"], "kappa": 0},
    )
    assert parse_options(["inner-pop=100", 'predictors=["mlp", "ridge"]']) == {
        "inner_pop": 100,
        "predictors": ["mlp", "ridge"],
    }
    for bad in ("linas[kappa=1", "linas]", "a,b]"):
        with pytest.raises(HwnasError, match="unclosed|unbalanced"):
            split_algorithms(bad)
    with pytest.raises(HwnasError, match="expected key=value"):
        parse_algorithm("linas[kappa]")
    with pytest.raises(HwnasError, match="expected NAME"):
        parse_algorithm("linas[kappa=1]x")
    with pytest.raises(HwnasError, match="unknown algorithm"):
        search_efficiency("nb201", ["fpga"], ["annealing[t=1]"], 10, 1)
    with pytest.raises(HwnasError, match="unknown 'kapa'"):  # before any worker starts
        search_efficiency("nb201", ["fpga"], ["linas[kapa=1]"], 10, 1)


def test_algorithm_options_are_checked_against_type_hints():
    name, cls, opts = resolve_algorithm("linas[kappa=1,class_mean=false]", {"inner_pop": "64"})
    assert (name, cls) == ("linas", LINAS)
    assert opts == {"kappa": 1.0, "class_mean": False, "inner_pop": 64}
    assert isinstance(opts["kappa"], float) and isinstance(opts["inner_pop"], int)
    algo = build_algorithm("linas[class_mean=false]", seed=3, options={"ensemble": 2})
    assert isinstance(algo, LINAS) and algo.seed == 3
    assert algo.class_mean is False and algo.ensemble == 2
    with pytest.raises(HwnasError, match="class_mean='maybe': Input should be a valid boolean"):
        resolve_algorithm("linas[class_mean=maybe]")
    with pytest.raises(
        HwnasError, match=r"unknown 'kapa' \(known: avoid_failures, batch_size, cheap"
    ):
        resolve_algorithm("linas", {"kapa": 1})
    with pytest.raises(HwnasError, match="given twice"):
        resolve_algorithm("linas[kappa=1]", {"kappa": 2})
    assert resolve_algorithm("linas[kappa=1]", {"kappa": 1})[2] == {"kappa": 1.0}
    with pytest.raises(HwnasError, match="inner_pop"):
        resolve_algorithm("linas[inner_pop=many]")
    with pytest.raises(HwnasError, match="selection must be 'rank' or 'hvi'"):
        build_algorithm("linas[selection=best]")


def test_run_search_takes_an_algorithm_spec(data_dir):
    s = run_search({"algorithm": "nsga2[pop_size=10]", "evaluations": 25, "seed": 1})
    assert s["algorithm"] == "nsga2[pop_size=10]" and s["evaluations"] == 25
    with pytest.raises(HwnasError, match="no architecture in the benchmark's table"):
        run_search({"algorithm": "random", "evaluations": 5, "constraints": ["latency<=0.001"]})


def test_efficiency_checkpoints():
    assert checkpoints(30) == [30]
    assert checkpoints(100) == [50, 100]
    assert checkpoints(200) == [50, 100, 200]
    assert checkpoints(500) == [50, 100, 200, 500]
    runs = [
        {
            "device": "d",
            "algorithm": "a",
            "seed": s,
            "hv_fraction": [0.1 * s] * 30,
            "front_recall": [0.0] * 30,
            "igd": [1.0] * 30,
            "overhead_per_iteration_s": None,
        }
        for s in (1, 2, 3)
    ]
    (row,) = efficiency_table(runs)
    assert row["evaluations"] == 30 and row["hv_fraction_median"] == pytest.approx(0.2)
    assert row["hv_fraction_min"] == pytest.approx(0.1) and row["seeds"] == 3


def test_study_records_keep_other_studies_runs_on_resume(tmp_path, data_dir):
    from hwnas.search.efficiency import finished_runs

    path = tmp_path / "records.jsonl"
    search_efficiency("nb201", ["fpga"], ["random"], 20, 2, records=path)
    search_efficiency("nb201", ["pixel3"], ["random"], 20, 2, records=path, resume=True)
    assert len(finished_runs(path)) == 4  # the fpga study's runs are still there
    search_efficiency("nb201", ["pixel3"], ["random"], 20, 2, records=path)
    assert len(finished_runs(path)) == 2  # without resume: afresh


def test_paired_comparison_by_seed():
    from hwnas.search.efficiency import paired_cell, paired_comparison

    def run(alg, seed, hv, recall):
        return {
            "device": "d",
            "algorithm": alg,
            "seed": seed,
            "hv_fraction": [hv] * 60,
            "front_recall": [recall] * 60,
            "igd": [1.0 - hv] * 60,
        }

    base = [run("a", s, 0.90 + 0.01 * s, 0.1) for s in range(10)]
    # b: ahead of a on every seed by 0.005 (seed 9 not run: only shared seeds count)
    b = [run("b", s, 0.905 + 0.01 * s, 0.1 + (0.1 if s < 3 else 0)) for s in range(9)]
    rows = paired_comparison(base + b)
    assert [(r["algorithm"], r["baseline"], r["evaluations"]) for r in rows] == [
        ("b", "a", 50),
        ("b", "a", 60),
    ]
    r = rows[-1]
    assert r["seeds"] == 9 and r["hv_fraction_mean_diff"] == pytest.approx(0.005)
    assert (r["hv_fraction_ahead"], r["hv_fraction_behind"]) == (9, 0)
    assert r["hv_fraction_p"] < 0.01  # nine of nine ahead: not the luck of the seeds
    assert (r["igd_ahead"], r["igd_behind"]) == (9, 0)  # lower igd counts as ahead
    assert r["front_recall_mean_diff"] == pytest.approx(0.1 / 3)
    assert (r["front_recall_ahead"], r["front_recall_behind"]) == (3, 0)
    assert r["front_recall_p"] > 0.05  # three seeds of nine: could be luck
    assert paired_cell(r, "hv_fraction") == "+0.0050 (9/0, p=0.0039)"
    same = paired_comparison(base + [{**x, "algorithm": "c"} for x in base])
    assert all(x["hv_fraction_p"] == 1.0 and x["hv_fraction_ahead"] == 0 for x in same)
    assert paired_comparison(base + b, baseline="b")[0]["algorithm"] == "a"
    with pytest.raises(HwnasError, match="not in the study"):
        paired_comparison(base, baseline="z")


class FlakyEvaluator(Evaluator):
    """Fails for architectures whose first choice is 0; counts calls."""

    source = "measured"

    def __init__(self) -> None:
        self.space = get_space("nb201")
        self.objectives = [Objective("accuracy", "max", "%", "quality"), Objective("latency")]
        self.calls = 0

    def evaluate(self, vectors):
        self.calls += len(vectors)
        if (vectors[:, 0] == 0).any():
            raise RuntimeError("device unreachable")
        return np.stack([vectors.sum(1).astype(float), 1.0 + vectors[:, 1]], 1)


def test_failed_evaluations_recorded_and_search_goes_on():
    ev = FlakyEvaluator()
    p = SearchProblem(ev, 30)
    ALGORITHMS.get("random")(seed=0).run(p)
    assert p.n_evaluated == 30
    failed = [not ok for ok in p.ok]
    assert any(failed) and not all(failed)
    for vec, ok in zip(p.vectors, p.ok, strict=True):
        assert ok == (vec[0] != 0)


class GoneEvaluator(FlakyEvaluator):
    """Answers ``answered`` chunks of ``max_batch``, then loses its device (SetupError)."""

    max_batch = 4

    def __init__(self, answered: int) -> None:
        super().__init__()
        self.answered = answered

    def evaluate(self, vectors):
        if self.answered <= 0:
            raise SetupError("cannot reach the agent at http://127.0.0.1:1: refused")
        self.answered -= 1
        return np.stack([vectors.sum(1).astype(float), 1.0 + vectors[:, 1]], 1)


def test_a_setup_error_stops_the_search_and_records_no_failure(tmp_path):
    """A device lost mid-search (SetupError) is no architecture's fault: the search stops
    with it, the chunks answered before are stored, nothing is stored as failed, and a
    resume evaluates the rest."""
    from hwnas.store.sqlite import ResultsStore

    store = ResultsStore(tmp_path / "r.sqlite")
    run_id = store.create_run({}, 0)
    p = SearchProblem(GoneEvaluator(answered=2), 12, store=store, run_id=run_id)
    with pytest.raises(SetupError, match="cannot reach the agent"):
        ALGORITHMS.get("random")(seed=0).run(p)
    recs = store.evaluations(run_id)
    assert len(recs) == 8 and all(r.ok for r in recs)  # two chunks of 4, no failure
    again = SearchProblem(GoneEvaluator(answered=10), 12)
    again.attach_store(store, run_id)
    ALGORITHMS.get("random")(seed=0).run(again)
    recs = store.evaluations(run_id)
    assert len(recs) == 12 == len({r.arch_key for r in recs}) and all(r.ok for r in recs)
    store.close()


def test_failed_evaluations_are_retried_in_place_on_request(tmp_path):
    """retry_failed: a resumed run's stored failures are evaluated again, each result in
    the failure's row (same sequence number), and the replay answers from them."""
    from hwnas.store.sqlite import ResultsStore

    store = ResultsStore(tmp_path / "r.sqlite")
    run_id = store.create_run({}, 0)
    p = SearchProblem(FlakyEvaluator(), 30, store=store, run_id=run_id)
    ALGORITHMS.get("random")(seed=0).run(p)
    before = {r.arch_key: r for r in store.evaluations(run_id)}
    failed = [k for k, r in before.items() if not r.ok]
    assert failed and len(before) == 30
    again = SearchProblem(GoneEvaluator(answered=100), 30)  # the device is fine now
    again.attach_store(store, run_id)
    assert again.retry_failed() == len(failed) and again.n_retried == len(failed)
    after = {r.arch_key: r for r in store.evaluations(run_id)}
    assert all(r.ok for r in after.values()) and len(after) == 30
    assert all(after[k].seq == before[k].seq for k in before)  # in place
    ALGORITHMS.get("random")(seed=0).run(again)
    again.finish_replay()
    assert again.n_evaluated == 30 and all(again.ok) and again.n_new == 0
    assert again.retry_failed() == 0  # nothing failed any more
    store.close()


def test_dedup_and_budget():
    ev = FlakyEvaluator()
    p = SearchProblem(ev, 5)
    x = np.array([[1, 1, 1, 1, 1, 1]] * 3 + [[2, 2, 2, 2, 2, 2]])
    raw, _, answered = p.evaluate(x)
    assert p.n_evaluated == 2 and answered.all() and (raw[0] == raw[1]).all()
    p.evaluate(np.array([[1, 1, 1, 1, 1, 1]]))
    assert p.n_evaluated == 2  # a repeat does not count
    raw, _, answered = p.evaluate(np.array([[3, 3, 3, 3, 3, k] for k in range(5)]))
    assert p.n_evaluated == 5 and answered.tolist() == [True, True, True, False, False]


def test_budget_beyond_the_space_stops_at_its_size(nb201_pixel3):
    with pytest.warns(UserWarning, match="more than the 15625 architectures of nb201"):
        p = SearchProblem(nb201_pixel3, 20000)
    assert p.budget == 15625
    ev = FlakyEvaluator()  # no table: the space's size bounds the budget
    assert SearchProblem(ev, 100).budget == 100
    with pytest.warns(UserWarning, match="stops at 15625"):
        assert SearchProblem(ev, 10**6).budget == 15625


def test_hvi_2d_matches_hypervolume_difference():
    rng = np.random.default_rng(0)
    front = rng.random((8, 2))
    front = front[non_dominated_mask(front)]
    ref = np.array([1.2, 1.2])
    cand = rng.random((50, 2)) * 1.3
    base = hypervolume(front, ref)
    expected = [hypervolume(np.concatenate([front, c[None]]), ref) - base for c in cand]
    assert np.allclose(hvi_2d(front, ref, cand), expected, atol=1e-12)


def test_vectorized_nsga2_finds_front_of_known_problem():
    sp = get_space("nb201")
    target = np.array([3, 3, 3, 3, 3, 3])

    def objective(X):
        # minimise distance to the target and the number of non-'none' ops
        return np.stack([np.abs(X - target).sum(1), (X != 0).sum(1)], 1).astype(float), None

    X, F = vectorized_nsga2(sp, objective, 60, 30, np.random.default_rng(0))
    assert len(X) == len(np.unique(X, axis=0))
    assert (F[:, 0] == 0).any() and (F[:, 1] == 0).any()  # both extremes reached


def test_linas_overhead_and_iterations(data_dir):
    s = run_search({"algorithm": "linas", "evaluations": 60, "seed": 0})
    its = s["iterations"]
    assert len(its) >= 3 and all(i["candidates"] > 1000 for i in its)
    assert s["search_overhead_s"] > 0 and s["evaluation_time_s"] >= 0


def test_linas_bad_options(data_dir):
    with pytest.raises(HwnasError):
        LINAS(selection="magic")
    with pytest.raises(HwnasError, match="one predictor per objective"):
        run_search(
            {
                "algorithm": "linas",
                "algorithm_options": {"predictors": ["ridge"]},
                "evaluations": 30,
            }
        )


def test_linas_default_predictors(data_dir):
    from hwnas.bench import get_benchmark

    problem = SearchProblem(get_benchmark("nb201", devices="pixel3"), 10, exact_front=False)
    assert LINAS()._predictor_names(problem) == ["mlp", "ridge"]


def test_linas_explicit_predictors(data_dir):
    s = run_search(
        {
            "algorithm": "linas",
            "algorithm_options": {**SMALL_LINAS, "predictors": ["cart", "ridge"], "batch_size": 5},
            "evaluations": 30,
            "seed": 0,
        }
    )
    assert s["evaluations"] == 30 and len(s["iterations"]) == 4


def test_linas_latency_model_chooses_its_feature_view(data_dir):
    from hwnas.bench import get_benchmark
    from hwnas.predict import ViewSelectPredictor

    for device, view in (("2080ti_1", 0), ("pixel3", 1)):
        bench = get_benchmark("nb201", devices=device)
        problem = SearchProblem(bench, 120, exact_front=False)
        problem.evaluate(bench.space.sample(120, 0))
        (acc, _), (lat, _) = LINAS(seed=0)._fit(problem, 0)
        assert not isinstance(acc, ViewSelectPredictor)  # accuracy: function features
        assert isinstance(lat, ViewSelectPredictor) and set(lat.cv_scores_) == {0, 1, 2, 3}
        assert lat.view_ == view  # op prices on the GPU; prices of computed ops on the phone
    # OFA MobileNetV3: Note10's table latency is a sum over blocks, which the MACs per
    # part explain far better than OFA's encoding (view 0 of 2)
    bench = get_benchmark("ofa-mbv3")
    problem = SearchProblem(bench, 30, exact_front=False)
    problem.evaluate(bench.space.sample(30, 0))
    (acc, _), (lat, _) = LINAS(seed=0)._fit(problem, 0)
    assert not isinstance(acc, ViewSelectPredictor)
    assert isinstance(lat, ViewSelectPredictor) and lat.view_ == 0


def test_linas_class_mean_uses_measured_equivalents(data_dir):
    from hwnas.bench import get_benchmark

    bench = get_benchmark("nb201", devices="pixel3")
    problem = SearchProblem(bench, 40, exact_front=False)
    X = bench.space.sample(30, 0)
    X[0] = [0, 3, 0, 0, 0, 3]  # 1<-0 none: 2<-1 and 3<-1 are dead
    problem.evaluate(X)
    acc = problem.evaluated_arrays()[1][0, 0]
    twins = np.array([[0, 3, 2, 0, 4, 3], [0, 3, 4, 0, 1, 3]])  # same function, not measured
    assert not problem.is_evaluated(twins).any()
    alg = LINAS(seed=0)  # class_mean is the default
    models = alg._fit(problem, 0)
    pred = alg._predict(problem, models, twins, optimistic=False)
    assert np.allclose(pred[:, 0], acc)  # accuracy: the measured equivalent's value
    assert pred[0, 1] != pred[1, 1]  # latency: still the model's, per cell
    plain = LINAS(seed=0, class_mean=False)  # the model's predictions
    pred_plain = plain._predict(problem, plain._fit(problem, 0), twins, optimistic=False)
    assert not np.allclose(pred_plain[:, 0], acc)


@pytest.mark.parametrize("benchmark", ["nb201", "ofa-mbv3"])
def test_linas_class_mean_end_to_end(data_dir, benchmark):
    # on spaces without function equivalences (OFA MobileNetV3) class_mean leaves the
    # model's predictions as they are
    for class_mean in (True, False):
        s = run_search(
            {
                "benchmark": benchmark,
                "algorithm": "linas",
                "algorithm_options": {**SMALL_LINAS, "class_mean": class_mean},
                "evaluations": 30,
                "seed": 0,
            }
        )
        assert s["evaluations"] == 30 and len(s["iterations"]) >= 1


def test_surrogate_search_uses_fixed_reference(data_dir):
    from hwnas.bench import get_benchmark

    ref = get_benchmark("ofa-mbv3").reference_point()
    runs = [
        run_search({"benchmark": "ofa-mbv3", "algorithm": a, "evaluations": 30, "seed": 0})
        for a in ("random", "nsga2")
    ]
    for s in runs:
        assert s["hv_fraction"] is None and s["hypervolume"] > 0
        assert np.allclose(s["reference_point"], ref)  # raw units, as the objectives
        F = np.array([[-p["accuracy"], p["latency"]] for p in s["pareto"]])
        assert hypervolume(F, ref * [-1, 1]) == pytest.approx(s["hypervolume"])
        assert len(s["hv_history"]) == 30


def test_search_efficiency_on_a_surrogate_benchmark(tmp_path, data_dir):
    """A benchmark without a full table is studied by hypervolume at its fixed
    reference point (no exact front); one that takes no device runs without one."""
    from hwnas.search.efficiency import (
        paired_comparison,
        study_devices,
        study_metrics,
        write_efficiency,
    )

    assert study_devices("ofa-resnet50", None) == [None]
    assert study_devices("ofa-mbv3", None) == ["note10"]
    assert study_devices("nb201", None) == ["pixel3", "raspi4", "fpga", "2080ti_1"]
    with pytest.raises(HwnasError, match="takes no device"):
        study_devices("ofa-resnet50", ["raspi4"])
    results = search_efficiency("ofa-resnet50", None, ["random", FAST_LINAS], 30, 2)
    assert study_metrics(results) == ("hypervolume",)
    refs = {tuple(r["reference_point"]) for r in results}
    assert len(refs) == 1 and len(results) == 4  # every run scored at the same point
    for r in results:
        assert r["device"] is None and "hv_fraction" not in r
        hv = np.array(r["hypervolume"])
        assert len(hv) == 30 and (np.diff(hv) >= 0).all() and hv[-1] > 0
    (row,) = [x for x in efficiency_table(results) if x["algorithm"] == FAST_LINAS]
    assert row["evaluations"] == 30 and row["hypervolume_median"] > 0
    (pair,) = paired_comparison(results)
    assert pair["algorithm"] == FAST_LINAS and pair["seeds"] == 2
    paths = write_efficiency(results, tmp_path, title="ofa-resnet50")
    assert paths["hypervolume"].is_file() and "hv_fraction" not in paths
    reach = (tmp_path / "reach.csv").read_text().splitlines()
    assert reach[0].startswith("device,target,metric,level,algorithm,evaluations_median")
    assert len(reach) == 3 and ",random,hypervolume," in reach[1]
    header = (tmp_path / "histories.csv").read_text().splitlines()[0]
    assert header == "device,algorithm,seed,evaluations,hypervolume"


def test_evaluations_csv_shows_constrained_metrics_and_feasibility(tmp_path, data_dir):
    import pandas as pd

    from hwnas.bench import get_benchmark

    s = run_search(
        {
            "benchmark": "ofa-resnet50",
            "algorithm": "motpe",  # Optuna's random start: no feasible sampling
            "evaluations": 30,
            "seed": 0,
            "constraints": ["params<=2e7", "mflops<=4000"],
        },
        out=tmp_path,
    )
    df = pd.read_csv(tmp_path / "evaluations.csv")
    assert list(df.columns[3:7]) == ["accuracy", "mflops", "params", "feasible"]
    space = get_benchmark("ofa-resnet50").space
    vecs = np.stack([space.from_key(k) for k in df["arch_key"]])
    assert (df["params"].to_numpy() == space.params_batch(vecs)).all()  # exact counts
    meets = (df["params"] <= 2e7) & (df["mflops"] <= 4000)
    assert (df["feasible"] == meets).all() and 0 < meets.sum() < len(df)
    assert int(meets.sum()) == s["feasible"]
    assert {p["arch_key"] for p in s["pareto"]} <= set(df.loc[meets, "arch_key"])
    # without constraints, no such columns
    run_search({"benchmark": "ofa-resnet50", "evaluations": 5}, out=tmp_path / "free")
    assert "feasible" not in pd.read_csv(tmp_path / "free" / "evaluations.csv").columns


def test_a_slow_evaluator_is_called_and_stored_in_chunks(tmp_path):
    """An evaluator with ``max_batch`` gets at most that many architectures a call, and
    each call's results are in the store before the next call: a kill (here an
    interrupt in the third call) loses only the chunk in progress."""
    from hwnas.store import ResultsStore

    class Slow(CheapCostEvaluator):
        max_batch = 2

        def __init__(self) -> None:
            super().__init__()
            self.calls: list[int] = []

        def evaluate(self, vectors):
            self.calls.append(len(vectors))
            if len(self.calls) == 3:
                raise KeyboardInterrupt
            return super().evaluate(vectors)

    ev = Slow()
    with ResultsStore(tmp_path / "r.sqlite") as store:
        problem = SearchProblem(ev, 10)
        run_id = store.create_run({"benchmark": "test"}, seed=0)
        problem.attach_store(store, run_id)
        with pytest.raises(KeyboardInterrupt):
            problem.evaluate(problem.space.sample(5, np.random.default_rng(0)))
        assert ev.calls == [2, 2, 1]
        assert len(store.evaluations(run_id)) == 4 and problem.n_evaluated == 4


@pytest.mark.parametrize(
    "algorithm", ["random", "nsga2", "unsga3", "moead", "ctaea", "motpe", "linas", "mnas"]
)
def test_warm_start_is_evaluated_first(algorithm, tmp_path, data_dir):
    """The warm start's architectures are the first evaluations (counted in the
    budget), whatever the algorithm; the run goes on from there."""
    import pandas as pd

    from hwnas.search.runner import warm_start_keys

    src = run_search(
        {
            "algorithm": "random",
            "evaluations": 60,
            "seed": 3,
            "benchmark_options": {"devices": "raspi4"},
        },
        out=tmp_path / "raspi4",
    )
    keys = warm_start_keys(tmp_path / "raspi4")
    # more than the population of 10 (MOEA/D's first population must have exactly 10)
    assert keys == [p["arch_key"] for p in src["pareto"]] and 10 < len(keys) <= 20
    s = run_search(
        {"algorithm": algorithm, "evaluations": 30, "seed": 0, "warm_start": keys},
        out=tmp_path / "pixel3",
    )
    df = pd.read_csv(tmp_path / "pixel3" / "evaluations.csv")
    assert set(df["arch_key"][: len(keys)]) == set(keys)
    assert s["evaluations"] == 30 and s["warm_start"] == len(keys)
    assert df["arch_key"].is_unique


def test_warm_start_errors_and_resume(tmp_path, data_dir):
    from hwnas.search.runner import resume_search, warm_start_keys

    with pytest.raises(HwnasError, match="no pareto.csv in"):
        warm_start_keys(tmp_path)
    with pytest.raises(HwnasError, match="neither a search directory nor a CSV"):
        warm_start_keys(tmp_path / "nothing.csv")
    (tmp_path / "bad.csv").write_text("key,x\n1,2\n")
    with pytest.raises(HwnasError, match="has no arch_key column"):
        warm_start_keys(tmp_path / "bad.csv")
    (tmp_path / "evals.csv").write_text(
        "arch_key,status\n1-2-3-4-0-1,ok\n1-2-3-4-0-2,failed\n1-2-3-4-0-1,OK\n 0-1-2-3-4-0 ,\n"
    )
    # ok rows (any case, blank too), each once
    assert warm_start_keys(tmp_path / "evals.csv") == ["1-2-3-4-0-1", "0-1-2-3-4-0"]
    (tmp_path / "failed.csv").write_text("arch_key,status\n1-2-3-4-0-2,failed\n")
    with pytest.raises(HwnasError, match="none of the 1 rows .* is an evaluated architecture"):
        warm_start_keys(tmp_path / "failed.csv")
    for keys, message in (
        (["1-2-3"], "warm start: '1-2-3' is no architecture of nb201"),
        ([f"0-0-0-0-{i}-{j}" for i in range(5) for j in range(5)], "more than the budget of 20"),
    ):
        with pytest.raises(HwnasError, match=message):
            run_search({"evaluations": 20, "warm_start": keys})
    warm = ["3-3-3-3-3-3", "1-3-1-3-1-3", "3-3-3-3-3-3"]
    out = tmp_path / "run"
    s = run_search({"algorithm": FAST_LINAS, "evaluations": 20, "warm_start": warm}, out=out)
    assert s["warm_start"] == 2  # distinct architectures
    s = resume_search(out, evaluations=30)  # the stored warm start replays: none repeated
    assert s["evaluations"] == 30 and s["resumed_from"] == 20 and s["warm_start"] == 2
    # a path is read as the CLI reads it: the run's front
    s = run_search({"algorithm": FAST_LINAS, "evaluations": 25, "warm_start": str(out)})
    assert s["warm_start"] == len(warm_start_keys(out)) > 0


def test_warm_start_refuses_a_search_still_running(tmp_path, data_dir):
    """A directory whose search holds its lock has no final front: refused, not read."""
    import subprocess
    import sys

    from hwnas.search.runner import warm_start_keys

    run_search({"algorithm": "random", "evaluations": 10}, out=tmp_path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom hwnas.process import out_dir_lock\n"
            "with out_dir_lock(sys.argv[1], 'search'):\n"
            "    print('held', flush=True)\n    time.sleep(60)\n",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(HwnasError, match="still running"):
            warm_start_keys(tmp_path)
    finally:
        holder.kill()
        holder.wait()
    assert warm_start_keys(tmp_path)  # once it has ended, its front is read


def test_front_plot_keeps_the_cheap_end_and_drops_degenerate_points():
    from hwnas.report.plots import front_ylim

    # OFA-ResNet50's front trails off at its cheap end: every point stays in view
    front = np.array([74.9, 75.9, 76.7, 77.6, 78.7, 79.6, 80.1, 80.9, 81.6, 82.3, 82.8, 83.0])
    assert front_ylim([front]) == (74.9, 83.0)
    # NB201: a 10 % cell at zero latency would squash the plot into a line
    nb201 = np.array([10.0, 84.1, 88.5, 90.2, 91.3, 92.4, 93.1, 93.6, 94.0, 94.4])
    lo, hi = front_ylim([nb201[1:], nb201[:1]])
    assert 60 < lo <= 84.1 and hi == 94.4
    assert front_ylim([]) == (0.0, None) and front_ylim([np.zeros(0)]) == (0.0, None)


def test_front_plot_zoom_hides_nothing():
    """A constraint's bound stays in view, and points below the zoomed axis are drawn on
    its edge and counted in the legend."""
    from hwnas.report.plots import _plt, zoom_on_fronts

    plt = _plt()
    fig, ax = plt.subplots()
    nb201 = np.array([10.0, 84.1, 88.5, 90.2, 91.3, 92.4, 93.1, 93.6, 94.0, 94.4])
    x = np.arange(10.0)
    drawn = [(x, nb201, "tab:red"), (x, nb201 - 50, "b"), (x, nb201, "0.3")]  # one twice
    zoom_on_fronts(ax, [nb201], keep=[80.0], drawn=drawn)
    lo, hi = ax.get_ylim()
    assert 60 < lo < 80 and hi > 94.4
    assert ax.get_legend_handles_labels()[1] == ["11 below the axis (on its edge)"]
    plt.close(fig)


def test_compare_scores_every_front_at_one_reference():
    from hwnas.report.compare import common_hypervolumes, compare_rows

    objectives = [{"name": "accuracy", "direction": "max"}, {"name": "latency", "direction": "min"}]

    def summary(run, front):
        pareto = [{"accuracy": a, "latency": lat} for a, lat in front]
        return {"run_dir": run, "algorithm": "x", "benchmark": "b", "evaluations": 5,
                "objectives": objectives, "pareto": pareto}  # fmt: skip

    a, b = summary("a", [(90.0, 1.0)]), summary("b", [(80.0, 0.5)])
    hvs, ref = common_hypervolumes([a, b])
    # worst corner (80 %, 1.0 ms) pushed out by 10 % of the range (10 %, 0.5 ms)
    assert ref == pytest.approx([79.0, 1.05])
    assert hvs == pytest.approx([11 * 0.05, 1 * 0.55])
    rows = compare_rows([a, b, summary("empty", [])])
    assert [r["hypervolume_common"] for r in rows] == pytest.approx([0.55, 0.55, 0.0])


def test_compare_shows_and_warns_when_objectives_were_taken_differently(tmp_path):
    """A search whose latency was measured here beside one on a published table: 'on'
    says which is which (no token file), and comparing them warns."""
    from hwnas.report.compare import compare_rows, load_summaries

    objectives = [{"name": "accuracy", "direction": "max"}, {"name": "latency", "direction": "min"}]
    measured = {"latency": True, "rounds": 10, "agent": "http://pi:8765", "token_file": "t"}
    for name, opts in (("table", {}), ("here", measured), ("also", {"devices": "note10"})):
        (tmp_path / name).mkdir()
        summary = {"benchmark": "ofa-mbv3", "benchmark_options": opts, "algorithm": "linas",
                   "evaluations": 5, "objectives": objectives,
                   "pareto": [{"accuracy": 75.0, "latency": 20.0}]}  # fmt: skip
        (tmp_path / name / "summary.json").write_text(json.dumps(summary))
    dirs = [tmp_path / n for n in ("table", "here", "also")]
    with pytest.warns(UserWarning, match="took their objectives differently .*latency=true"):
        rows = compare_rows(load_summaries(dirs))
    assert [r["on"] for r in rows] == [
        "ofa-mbv3",
        "ofa-mbv3 agent=http://pi:8765 latency=true rounds=10",
        "ofa-mbv3 note10",
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # devices alone differ: shown, not warned about
        load_summaries([dirs[0], dirs[2]])
    # accuracy on two datasets on one axis: warned about
    for name, dataset in (("c10", "cifar10"), ("c100", "cifar100")):
        (tmp_path / name).mkdir()
        summary = {"benchmark": "nb201", "benchmark_options": {"dataset": dataset},
                   "algorithm": "linas", "evaluations": 5, "objectives": objectives,
                   "pareto": [{"accuracy": 75.0, "latency": 2.0}]}  # fmt: skip
        (tmp_path / name / "summary.json").write_text(json.dumps(summary))
    with pytest.warns(UserWarning, match="accuracy on different datasets .*c10: cifar10"):
        load_summaries([tmp_path / "c10", tmp_path / "c100"])


def test_evaluations_to_reach_a_target_algorithms_final_value():
    from hwnas.search.efficiency import evaluations_to_reach

    def run(alg, seed, curve):
        return {"device": None, "algorithm": alg, "seed": seed, "hypervolume": curve}

    results = [
        run("random", 0, [1, 2, 3, 4, 5]),
        run("random", 1, [1, 2, 3, 4, 7]),
        run("random", 2, [1, 2, 3, 4, 6]),  # final median: 6
        run("fast", 0, [6, 6, 6, 6, 6]),
        run("fast", 1, [1, 2, 7, 8, 9]),
        run("fast", 2, [1, 1, 1, 1, 2]),  # never reaches 6
        run("slow", 0, [0, 0, 0, 0, 0]),
        run("slow", 1, [0, 0, 0, 0, 6]),
        run("slow", 2, [0, 0, 0, 0, 1]),
    ]
    rows = {r["algorithm"]: r for r in evaluations_to_reach(results, "random")}
    assert rows["random"]["level"] == 6.0 and rows["random"]["metric"] == "hypervolume"
    assert (rows["random"]["evaluations_median"], rows["random"]["reached"]) == (5.0, 2)
    assert (rows["fast"]["evaluations_median"], rows["fast"]["reached"]) == (3.0, 2)
    # one seed of three reaches it: the median seed never does
    assert (rows["slow"]["evaluations_median"], rows["slow"]["reached"]) == (None, 1)
    with pytest.raises(HwnasError, match="not in the study"):
        evaluations_to_reach(results, "nsga2")


def test_rank_weights():
    # minimisation values: the lowest (best) gets 2.5, the highest 0.5, linear between
    w = rank_weights(np.array([3.0, 1.0, 2.0]))
    assert np.allclose(w, [0.5, 2.5, 1.5])
    w = rank_weights(np.array([1.0, 1.0, 5.0]))  # ties share a weight
    assert w[0] == w[1] > w[2] == 0.5
    assert np.allclose(rank_weights(np.array([4.0])), [1.0])


def test_linas_quality_weights_option(data_dir):
    with pytest.raises(HwnasError, match="quality_weights must be 'rank' or 'none'"):
        LINAS(quality_weights="top")
    runs = {
        qw: run_search(
            {
                "algorithm": f"linas[quality_weights={qw}]",
                "algorithm_options": SMALL_LINAS,
                "evaluations": 60,
                "seed": 4,
                "benchmark_options": {"devices": "fpga"},
            }
        )
        for qw in ("rank", "none")
    }
    for s in runs.values():
        assert s["evaluations"] == 60
    # the weights change what the accuracy predictor proposes
    keys = {qw: [p["arch_key"] for p in s["pareto"]] for qw, s in runs.items()}
    hist = {qw: s["hv_fraction_history"] for qw, s in runs.items()}
    assert keys["rank"] != keys["none"] or hist["rank"] != hist["none"]


class TinySpace(SearchSpace):
    """Two choices of 100: 10,000 architectures, so a search can exhaust it."""

    name = "tiny"
    dims = (Dimension("a", tuple(range(100))), Dimension("b", tuple(range(100))))

    def decode(self, vector):
        return [int(v) for v in vector]

    def encode(self, config):
        return self.validate(config)


class TinyEvaluator(Evaluator):
    source = "measured"

    def __init__(self) -> None:
        self.space = TinySpace()
        self.objectives = [Objective("accuracy", "max", "%", "quality"), Objective("latency")]

    def evaluate(self, vectors):
        return np.stack([vectors.sum(1).astype(float), 1.0 + vectors[:, 0]], 1)


def test_random_search_exhausts_a_small_space():
    # uniform draws would rarely hit the last few unseen architectures before the stall
    # limit; random search then draws from the ones left
    p = SearchProblem(TinyEvaluator(), 10_000)
    ALGORITHMS.get("random")(seed=0).run(p)
    assert p.n_evaluated == 10_000 and len(set(p.keys)) == 10_000


def test_a_search_that_stops_short_says_so(data_dir, monkeypatch):
    class Stubborn:
        """Proposes one architecture again and again (a converged search)."""

        def check(self, problem):
            pass

        def run(self, problem):
            for _ in range(5):
                problem.evaluate(np.zeros((1, 6), dtype=np.int64))

    monkeypatch.setattr("hwnas.search.runner.build_algorithm", lambda *a, **k: Stubborn())
    with pytest.warns(UserWarning, match="stopped at 1 of 20 evaluations"):
        summary = run_search({"algorithm": "random", "evaluations": 20})
    assert summary["evaluations"] == 1 and summary["budget"] == 20
    assert summary["warm_start"] == 0
    # an algorithm outside the SearchAlgorithm base has no way to start from a warm start
    with pytest.raises(HwnasError, match="takes no warm start"):
        run_search({"algorithm": "random", "evaluations": 20, "warm_start": ["0-0-0-0-0-1"]})


def test_no_feasible_architecture_gives_valid_json(tmp_path, data_dir):
    # raspi4 latency <= 5 ms exists in the table, but not among the first few evaluations
    config = {
        "benchmark_options": {"devices": "pixel3,raspi4"},
        "algorithm": "random",
        "evaluations": 3,
        "constraints": ["latency_raspi4<=2.5"],
        "algorithm_options": {},
    }
    summary = run_search(config, out=tmp_path)
    assert summary["feasible"] == 0 and summary["igd"] is None
    assert summary["igd_history"] == [None] * 3

    def refuse(name):
        raise AssertionError(f"{name} in summary.json")

    json.loads((tmp_path / "summary.json").read_text(), parse_constant=refuse)


def test_summary_records_the_algorithm_options(data_dir):
    summary = run_search(
        {"algorithm": "linas[kappa=1]", "algorithm_options": {"n_init": 10}, "evaluations": 12}
    )
    assert summary["algorithm_options"] == {"kappa": 1.0, "n_init": 10}


@pytest.mark.parametrize(
    "config, message",
    [
        ({"seed": -1}, "seed"),
        ({"seed": 2**70}, "seed"),
        ({"evaluations": True}, "evaluations"),
        ({"benchmark_options": {"devices": "pixel3", "foo": 1}}, "has no option foo"),
        ({"benchmark_options": {"devices": 5}}, "devices must be device names"),
        ({"benchmark_options": {"devices": "pixel3,pixel3"}}, "pixel3 given twice"),
        ({"algorithm": "linas[batch_size=-5]"}, "batch_size must be >= 1"),
        ({"algorithm": "linas[ensemble=0]"}, "ensemble must be >= 1"),
        ({"algorithm": "linas[kappa=nan]"}, "kappa must be a finite number"),
        ({"algorithm": "linas[predictors=foo]"}, "unknown predictor 'foo'"),
        ({"algorithm": "nsga2[pop_size=0]"}, "pop_size must be >= 1"),
    ],
)
def test_bad_search_configs_fail_before_any_evaluation(config, message, tmp_path, data_dir):
    with pytest.raises(HwnasError, match=message):
        run_search({"evaluations": 20, **config}, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()  # nothing stored


def test_resume_needs_a_stored_run(tmp_path, data_dir):
    with pytest.raises(HwnasError, match="needs the run directory"):
        run_search({"evaluations": 20}, resume=True)
    with pytest.raises(HwnasError, match="no results store"):
        run_search({"evaluations": 20}, out=tmp_path / "new", resume=True)
    assert not (tmp_path / "new").exists()


def test_registry_descriptions_are_whole_sentences():
    for name in ALGORITHMS.names():
        assert ALGORITHMS.describe(name).endswith((".", ")")), name
    assert "inner NSGA-II" in ALGORITHMS.describe("linas")


def test_study_refuses_empty_or_repeated_devices_and_algorithms(data_dir):
    for devices, algorithms, message in (
        ([], ["random"], "at least one device"),
        (["pixel3"], [], "at least one algorithm"),
        (["pixel3", "pixel3"], ["random"], "device pixel3 given twice"),
        (["pixel3"], ["random", "random"], "algorithm random given twice"),
        (["pixel3", "nope"], ["random"], "unknown device 'nope'"),
    ):
        with pytest.raises(HwnasError, match=message):
            search_efficiency("nb201", devices, algorithms, 10, 1)


class CheapCostEvaluator(Evaluator):
    """NB201 cells: a smooth 'accuracy' and a cost no model learns from a few samples
    (a hash of the cell), which the evaluator computes exactly and cheaply."""

    source = "measured"

    def __init__(self) -> None:
        self.space = get_space("nb201")
        self.objectives = [Objective("accuracy", "max", "%", "quality"), Objective("cost")]
        self.cheap_objectives = ("cost",)
        self.expensive_calls = 0

    def accuracy(self, x: np.ndarray) -> np.ndarray:
        return (x == 3).sum(1) * 10.0 + (x == 1).sum(1) * 3.0 + x[:, 5]

    def evaluate_cheap(self, vectors):
        x = np.atleast_2d(vectors).astype(np.int64)
        return ((x @ np.array([7, 31, 101, 211, 401, 613]) * 2654435761) % 1009 / 1009.0)[:, None]

    def evaluate(self, vectors):
        x = np.atleast_2d(vectors)
        self.expensive_calls += len(x)
        return np.concatenate([self.accuracy(x)[:, None], self.evaluate_cheap(x)], axis=1)


def test_linas_takes_cheap_objectives_from_the_evaluator():
    """An objective the evaluator computes exactly and cheaply is used as is for every
    candidate (not learnt from the evaluations); only the expensive one is fitted."""
    ev = CheapCostEvaluator()
    problem = SearchProblem(ev, 60)
    assert problem.cheap_indices == [1]
    alg = LINAS(seed=0)
    problem.evaluate(problem.space.sample(20, np.random.default_rng(0)))
    models = alg._fit(problem, 0)
    assert models[1] == (None, None) and models[0][0] is not None
    X = problem.space.sample(300, np.random.default_rng(1))
    pred = alg._predict(problem, models, X, optimistic=False)
    np.testing.assert_array_equal(pred[:, 1], ev.evaluate_cheap(X)[:, 0])
    assert ev.expensive_calls == 20  # predicting evaluated nothing

    import itertools

    table = np.array(list(itertools.product(range(5), repeat=6)))
    F = ev.evaluate(table) * np.array([-1.0, 1.0])
    best = set(ev.space.keys(table[non_dominated_mask(F)]))

    def found(cheap: bool) -> int:
        p = SearchProblem(CheapCostEvaluator(), 60)
        LINAS(seed=0, cheap=cheap).run(p)
        assert p.n_evaluated == 60
        return len(best & set(p.keys))

    # the hash cannot be learnt from 60 cells; known exactly, the whole front is found
    assert found(True) == len(best) > found(False)


class SizedEvaluator(CheapCostEvaluator):
    """As above, with a 'size' metric (not an objective) a constraint may bound."""

    metrics = ("size",)

    def evaluate_metrics(self, vectors):
        return np.atleast_2d(vectors).sum(axis=1, keepdims=True).astype(float)

    def metric_range(self):
        return {"size": (0.0, 24.0)}


@pytest.mark.parametrize("algorithm", ["random", "nsga2", "motpe", "linas", "mnas"])
def test_constraints_may_bound_a_metric_that_is_no_objective(algorithm):
    ev = SizedEvaluator()
    problem = SearchProblem(ev, 40, constraints=[Constraint.parse("size<=8")])
    ALGORITHMS.get(algorithm)(seed=0).run(problem)
    keys, _ = problem.feasible_set()
    assert keys
    if algorithm in ("random", "linas"):  # random draws only cells that can be feasible
        assert len(keys) == problem.n_evaluated
    for i in problem.front_indices():
        assert problem.vectors[i].sum() <= 8
    raw, G, _ = problem.evaluate(np.array([[4, 4, 4, 0, 0, 0], [1, 1, 1, 1, 1, 1]]))
    assert G[:, 0].tolist() == [4.0, -2.0]  # violation = size - 8
    with pytest.raises(HwnasError, match="also constrainable: size"):
        SearchProblem(ev, 10, constraints=[Constraint.parse("params<=3")])
    with pytest.raises(ValueError, match="need the architectures' vectors"):
        problem.constraint_values(raw)
    assert problem.constrained_metrics == ["size"]
    for i in problem.front_indices():
        assert problem.metric_values(problem.vectors[i])["size"][0] <= 8
    # a bound no architecture meets is refused before any evaluation
    for bound in ("size<=-1", "size>=25"):
        with pytest.raises(HwnasError, match=r"no architecture of nb201 satisfies .* 0 to 24"):
            SearchProblem(ev, 10, constraints=[Constraint.parse(bound)])


@pytest.mark.parametrize("algorithm", ["random", "nsga2", "agemoea", "linas", "mnas"])
def test_random_starts_meet_constraints_known_before_evaluation(algorithm):
    """A constraint on a metric or a cheap objective (params, MFLOPs, a predicted
    latency) is known before evaluation: a random start draws only cells that meet it,
    where about one in ten does, so no evaluation of the start is wasted."""
    from hwnas.search.algorithms import sample_feasible

    ev = CheapCostEvaluator()
    problem = SearchProblem(ev, 30, constraints=["cost<=0.1"])
    assert problem.known_constraints == [0]
    rng = np.random.default_rng(0)
    x = sample_feasible(problem, 25, rng)
    assert len(x) == 25 and len({tuple(r) for r in x}) == 25
    assert (ev.evaluate_cheap(x)[:, 0] <= 0.1).all()
    assert problem.n_evaluated == 0  # nothing evaluated or counted
    options = {"pop_size": 10} if algorithm in ("nsga2", "agemoea", "mnas") else {}
    ALGORITHMS.get(algorithm)(seed=0, **options).run(problem)
    first = np.array(problem.raw[:10])
    assert (first[:, 1] <= 0.1).all()
    # too few feasible cells: the least violating fill in, and still no evaluation
    tight = SearchProblem(ev, 30, constraints=["cost<=0.001"])
    v = tight.known_violation(sample_feasible(tight, 40, rng))
    assert v is not None and v[0] == 0 and v[-1] > 0 and np.all(np.diff(v) >= 0)
    many = sample_feasible(tight, 300, rng)  # distinct networks even past the last round
    assert len(set(tight.space.keys(many))) == len(many) == 300
    # no constraint known before evaluation: plain samples
    assert SearchProblem(ev, 30, constraints=["accuracy>=10"]).known_constraints == []
    assert SearchProblem(ev, 30, constraints=["accuracy>=10"]).known_violation(x) is None


def test_likely_mistaken_settings_are_warned_of():
    """A floor on a minimised objective (or a ceiling on a maximised one) is more likely
    a typo than a wish; LINAS with an initial population as large as the budget is a
    random search. Both run, with a warning."""
    ev = CheapCostEvaluator()
    with pytest.warns(
        UserWarning,
        match=r"bounds cost, which the search minimises, from below; did you mean 'cost<=0.5'",
    ):
        SearchProblem(ev, 10, constraints=["cost>=0.5"])
    with pytest.warns(UserWarning, match="accuracy, which the search maximises, from above"):
        SearchProblem(ev, 10, constraints=["accuracy<=50"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SearchProblem(ev, 10, constraints=["cost<=0.5", "accuracy>=50"])
        LINAS(seed=0, n_init=10).run(SearchProblem(ev, 12))
    with pytest.warns(UserWarning, match="n_init 20 >= the budget of 12 evaluations"):
        LINAS(seed=0, n_init=20).run(SearchProblem(ev, 12))


def test_csv_arch_column_is_the_arch_string_or_json(tmp_path, data_dir):
    """An arch string goes into the CSVs as it is (no JSON quotes around it); a
    structured architecture (an OFA config) as JSON that parses back to it."""
    import csv

    s = run_search({"algorithm": "random", "evaluations": 20, "seed": 0}, out=tmp_path / "a")
    with (tmp_path / "a" / "pareto.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["arch"] for r in rows] == [p["arch"] for p in s["pareto"]]
    assert rows[0]["arch"].startswith("|") and rows[0]["arch"].endswith("|")
    # values as summary.json has them, not rounded (rows join on them)
    assert [float(r["accuracy"]) for r in rows] == [p["accuracy"] for p in s["pareto"]]
    assert [float(r["latency"]) for r in rows] == [p["latency"] for p in s["pareto"]]
    with (tmp_path / "a" / "evaluations.csv").open() as f:
        assert all(r["arch"].startswith("|") for r in csv.DictReader(f))
    s = run_search(
        {"benchmark": "ofa-mbv3", "algorithm": "random", "evaluations": 5, "seed": 0},
        out=tmp_path / "b",
    )
    with (tmp_path / "b" / "pareto.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [json.loads(r["arch"]) for r in rows] == [p["arch"] for p in s["pareto"]]


def test_a_resume_measuring_on_another_machine_warns(tmp_path):
    """measured_on reads the machine from a benchmark's details (this machine's, or an
    agent's description of itself); a resume whose machine differs from the earlier
    segments' warns that its evaluations would mix two machines."""
    from hwnas.bench.measured import measured_on
    from hwnas.search.runner import _check_same_machine

    here = {"hostname": "vm", "machine": "x86_64", "cpu_model": "EPYC", "logical_cores": 2}
    pi = {**here, "hostname": "pi", "machine": "aarch64", "cpu_model": "Cortex-A72"}
    local = {"latency": {"on": "this machine", "host": here}}
    agent = {"latency": {"agent": {"url": "http://pi:8765", "host": {**pi, "python": "3.11"}}}}
    assert measured_on(local) == here and measured_on(agent) == pi
    assert measured_on({"latency": {"agent": {"url": "http://pi:8765"}}}) is None  # not asked
    assert measured_on({"space": "nb201"}) is None  # a table: nothing measured
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _check_same_machine(local, [local, {"space": "x"}], tmp_path)  # the same machine
        _check_same_machine({"space": "nb201"}, [local], tmp_path)  # nothing measured now
        _check_same_machine(agent, [], tmp_path)  # a new run
    with pytest.warns(UserWarning, match=r"measured latency on vm \(EPYC, 2 cores\) and now .* pi"):
        _check_same_machine(agent, [local], tmp_path)


def test_compare_tells_a_running_or_stale_search_and_plots_into_a_new_folder(
    tmp_path, data_dir, held_elsewhere
):
    """compare reads summary.json: a search still running without one is said to be
    running (not killed); one whose store has gone past its summary (resumed, then
    killed) is compared with a warning to resume it; --out a new folder takes the plot."""
    from hwnas.report.compare import load_summaries, plot_compare
    from hwnas.store.sqlite import ResultsStore

    done = tmp_path / "done"
    run_search({"algorithm": "random", "evaluations": 10, "seed": 0}, out=done)
    (tmp_path / "new").mkdir()
    running = pytest.raises(HwnasError, match="'.*new' is still running: wait for it to end")
    with held_elsewhere(tmp_path / "new", "search"), running:
        load_summaries([tmp_path / "new"])
    with ResultsStore(done / "results.sqlite") as store:  # a resume that stored one more
        store.add_evaluation(store.latest_run("search")["run_id"], "x", [0] * 6, {"a": 1.0})
    with pytest.warns(UserWarning, match=r"10 evaluations; the store holds 11\); 'hwnas search"):
        summaries = load_summaries([done])
    png = plot_compare(summaries, tmp_path / "plots" / "new-folder")
    assert png == tmp_path / "plots" / "new-folder" / "compare.png" and png.is_file()


def test_pareto_plot_says_which_budget_each_point_broke(tmp_path, data_dir, monkeypatch):
    """Two budgets: points over one of them are labelled with that one, not both (the
    legend named every budget for every point over any)."""
    import hwnas.report.plots as plots

    seen: dict[str, list[str]] = {}
    save = plots._save

    def legend_of(plt, fig, path):
        seen[path.name] = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        return save(plt, fig, path)

    monkeypatch.setattr(plots, "_save", legend_of)
    budgets = ["latency<=5", "accuracy>=90"]
    run_search({"algorithm": "random", "evaluations": 40, "constraints": budgets}, out=tmp_path)
    (labels,) = [v for k, v in seen.items() if "pareto" in k]
    assert {"breaks latency<=5", "breaks accuracy>=90"} <= set(labels)
    assert "breaks latency<=5 and accuracy>=90" in labels


def test_problem_refuses_what_it_cannot_evaluate():
    """Built by hand, a constraint checks its operator and bound (one with '<' would act
    as '>='); a problem takes constraint strings, refuses a fractional budget and never
    charges the budget for a vector outside the space."""
    from hwnas.bench import get_benchmark

    bench = get_benchmark("nb201")
    for args, msg in (
        (("latency", "<", 5), "operator must be '<=' or '>='"),
        (("latency", "<=", "5"), "finite number"),
        (("latency", "<=", float("nan")), "finite number"),
        (("", "<=", 5), "objective name"),
    ):
        with pytest.raises(HwnasError, match=msg):
            Constraint(*args)
    assert Constraint("latency", "<=", np.int64(5)).bound == 5.0
    with pytest.raises(HwnasError, match="integer >= 1, got 2.5"):
        SearchProblem(bench, 2.5)
    p = SearchProblem(bench, np.int64(10), constraints=["latency<=5"])
    assert str(p.constraints[0]) == "latency<=5"
    for bad, msg in (([[9] * 6], "outside 0..4"), ([[0, 1, 2]], "must have 6 entries")):
        with pytest.raises(HwnasError, match=msg):
            p.evaluate(np.array(bad))
    with pytest.raises(HwnasError, match="integers"):
        p.evaluate(np.array([[0.7, 1, 2, 3, 4, 0]]))
    assert p.n_evaluated == 0 and p.remaining == 10
    raw, G, answered = p.evaluate(bench.space.sample(4, 0))
    assert answered.all() and p.n_evaluated == 4
    assert ((G[:, 0] <= 0) == (raw[:, 1] <= 5)).all()


def test_run_search_takes_numpy_integers():
    """A config built in a loop over np.arange is as valid as one typed by hand."""
    r = run_search({"algorithm": "random", "evaluations": np.int64(6), "seed": np.int64(3)})
    assert r["evaluations"] == 6
    assert r["pareto"] == run_search({"algorithm": "random", "evaluations": 6, "seed": 3})["pareto"]


def test_a_device_latency_constraint_survives_adding_a_device():
    """'latency:pixel3' (as predictors and dsearch spell it) and 'latency_pixel3' name
    pixel3's latency whether it is the only device ('latency') or one of several."""
    one = {"benchmark_options": {"devices": "pixel3"}, "algorithm": "random", "evaluations": 8}
    two = {**one, "benchmark_options": {"devices": "pixel3,raspi4"}}
    for spelt in ("latency:pixel3", "latency_pixel3"):
        r = run_search({**one, "constraints": [f"{spelt}<=5"]})
        assert r["constraints"] == ["latency<=5"]
        assert all(p["latency"] <= 5 for p in r["pareto"])
        r = run_search({**two, "constraints": [f"{spelt}<=5"]})
        assert r["constraints"] == ["latency_pixel3<=5"]
        assert all(p["latency_pixel3"] <= 5 for p in r["pareto"])
    with pytest.raises(HwnasError, match="unknown objective 'latency:raspi4'"):
        run_search({**one, "constraints": ["latency:raspi4<=5"]})


@pytest.mark.parametrize("name", ["random", "linas"])
def test_an_option_an_algorithm_ignores_is_refused(name):
    """random has no population and LINAS's is n_init, then batch_size: a pop_size
    there would be accepted, recorded and do nothing."""
    from hwnas.search.spec import algorithm_options

    assert "pop_size" not in [o["name"] for o in algorithm_options(name)]
    with pytest.raises(HwnasError, match="unknown 'pop_size'"):
        run_search({"algorithm": f"{name}[pop_size=3]", "evaluations": 5})


def test_every_algorithm_option_says_what_it_does():
    """'hwnas algorithms NAME' explains each option, not only its type and default."""
    from hwnas.search.spec import algorithm_options

    for name in ALGORITHMS.names():
        for o in algorithm_options(name) or []:
            assert o["help"], f"{name}: option {o['name']} has no help"


def test_an_algorithm_that_cannot_take_the_objectives_names_those_that_can():
    opts = {"devices": "pixel3,fpga,raspi4"}  # accuracy and three latencies
    with pytest.raises(HwnasError, match=r"takes 1 to 3 objectives, got 4 \(these take 4: ") as e:
        run_search({"algorithm": "nsga2", "benchmark_options": opts, "evaluations": 5})
    named = str(e.value).split("these take 4: ")[1].rstrip(")").split(", ")
    assert {"random", "linas", "unsga3", "ctaea", "moead"} <= set(named)
    assert "nsga2" not in named and "mnas" not in named


def test_algorithm_label_reads_the_same_however_options_were_given():
    from hwnas.search.spec import algorithm_label

    assert algorithm_label("nsga2", {"pop_size": 10}) == "nsga2[pop_size=10]"
    assert algorithm_label("nsga2[pop_size=10]", {"pop_size": 10}) == "nsga2[pop_size=10]"
    both = algorithm_label("linas[n_init=10]", {"n_init": 10, "batch_size": 5})
    assert both == "linas[n_init=10,batch_size=5]"  # the --option one is not dropped
    assert algorithm_label("random", {}) == "random"


def test_a_run_stored_with_a_retired_option_still_resumes(tmp_path):
    """linas and random once took pop_size (and ignored it): a run stored with it, killed
    before its end, resumes without it instead of being refused."""
    import sqlite3

    from hwnas.search import resume_search

    out = tmp_path / "s"
    run_search({"algorithm": "linas", "evaluations": 12, "seed": 1}, out=out)
    con = sqlite3.connect(out / "results.sqlite")
    (config,) = con.execute("SELECT config FROM runs").fetchone()
    old = {**json.loads(config), "algorithm": "linas[pop_size=20]"}
    old["algorithm_options"] = {"pop_size": 20}  # both ways it was given
    con.execute("UPDATE runs SET config = ?", (json.dumps(old),))
    con.commit()
    con.close()
    with pytest.warns(UserWarning, match="option pop_size never did anything"):
        s = resume_search(out, evaluations=15)
    assert s["evaluations"] == 15 and s["algorithm"] == "linas"


def test_a_search_refuses_a_folder_it_would_break(tmp_path):
    """Into a profile's folder (its summary.json replaced, the profile then refused to
    grow) or beside a summary.json/CSVs of something else, a search is refused."""
    from hwnas.store.sqlite import ResultsStore

    prof = tmp_path / "prof"
    with ResultsStore(prof / "results.sqlite") as store:
        store.create_run({"space": "mbv3-cifar"}, 0, kind="profile")
    (prof / "summary.json").write_text('{"stored": 4}')
    with pytest.raises(HwnasError, match="holds a profile run in results.sqlite, not a search"):
        run_search({"algorithm": "random", "evaluations": 5}, out=prof)
    assert (prof / "summary.json").read_text() == '{"stored": 4}'
    other = tmp_path / "other"
    other.mkdir()
    (other / "evaluations.csv").write_text("my,data\n")
    with pytest.raises(HwnasError, match="holds evaluations.csv but no results.sqlite"):
        run_search({"algorithm": "random", "evaluations": 5}, out=other)
    # a search's own folder takes another search (a new run in its store)
    run_search({"algorithm": "random", "evaluations": 5}, out=tmp_path / "s")
    assert run_search({"algorithm": "random", "evaluations": 6}, out=tmp_path / "s")


def test_compare_refuses_a_front_entry_without_its_objectives(tmp_path):
    from hwnas.report.compare import load_summaries

    s = {"benchmark": "nb201", "algorithm": "random", "evaluations": 1,
         "objectives": [{"name": "accuracy"}, {"name": "latency"}]}  # fmt: skip
    for front, msg in (([{"arch_key": "x"}], "front entry 0 lacks"), ({}, "no list")):
        (tmp_path / "summary.json").write_text(json.dumps({**s, "pareto": front}))
        with pytest.raises(HwnasError, match=msg):
            load_summaries([tmp_path])
