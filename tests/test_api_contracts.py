"""The library used from Python with one's own evaluator: what a mistake in it does
(clear errors instead of searches that go the wrong way, mixed runs or wasted budgets)."""

import time
from pathlib import Path

import numpy as np
import pytest

from hwnas.bench.base import Evaluator, Objective
from hwnas.errors import HwnasError
from hwnas.registry import ALGORITHMS
from hwnas.search import SearchProblem, run_search
from hwnas.search.problem import FAILED_START, EvaluatorError
from hwnas.space import get_space


class Custom(Evaluator):
    """NB201 cells with two made-up objectives; ``answer`` shapes what evaluate returns,
    ``fail_first`` makes that many evaluations raise first."""

    source = "measured"

    def __init__(self, answer=None, fail_first: int = 0, names=("acc", "cost")) -> None:
        self.space = get_space("nb201")
        self.objectives = [Objective(names[0], "max", "%", "quality"), Objective(names[1])]
        self.answer, self.fail_first = answer, fail_first

    def evaluate(self, vectors):
        vectors = np.atleast_2d(vectors)
        if self.fail_first > 0:
            self.fail_first -= len(vectors)
            raise RuntimeError("my evaluator is broken")
        if self.answer is not None:
            return self.answer(vectors)
        return np.stack([vectors.sum(1) + 0.0, 1.0 + vectors[:, 1]], 1)


class FailingFirst(Custom):
    """A registered benchmark (run_search builds it by name) whose first 5 fail."""

    def __init__(self) -> None:
        super().__init__(fail_first=10)  # the initial 5, as a chunk and one by one


def test_objective_direction_and_kind_are_checked():
    """'minimize' used to be read as maximise (anything but 'min' was)."""
    with pytest.raises(HwnasError, match="direction is 'min' or 'max', not 'minimize'"):
        Objective("latency", "minimize")  # type: ignore[arg-type]
    with pytest.raises(HwnasError, match="kind is 'quality' or 'cost'"):
        Objective("acc", "max", kind="Quality")  # type: ignore[arg-type]
    assert Objective("latency").sign == 1.0 and Objective("acc", "max").sign == -1.0


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        (lambda v: v.sum(1) + 0.0, r"returned shape \(\d+,\) for \d+ architecture"),
        (lambda v: np.ones((len(v), 3)), r"shape \(\d+, 3\).*expected \(\d+, 2\)"),
        (lambda v: None, "must return numbers"),
        (lambda v: [{"acc": 1}] * len(v), "must return numbers"),
    ],
)
def test_an_evaluator_of_the_wrong_shape_stops_the_search(answer, match):
    """One value per architecture for two objectives was taken as OK (every point 'on
    the front'); too many columns or no numbers at all failed cryptically."""
    p = SearchProblem(Custom(answer), 12)
    with pytest.raises(EvaluatorError, match=match):
        ALGORITHMS.get("random")(seed=0).run(p)
    assert p.n_evaluated == 0  # nothing stored as failed: the evaluator's bug


def test_one_objective_may_answer_one_value_per_architecture():
    ev = Custom()
    ev.objectives = ev.objectives[1:]
    ev.answer = lambda v: 1.0 + v[:, 1]  # shape (n,)
    p = SearchProblem(ev, 10)
    ALGORITHMS.get("random")(seed=0).run(p)
    assert p.n_evaluated == 10 and all(p.ok)


@pytest.mark.parametrize(
    ("names", "match"),
    [
        (("acc", "acc"), "two objectives are named acc"),
        (("acc", "status"), "is a column"),
        (("acc", "vector"), "is a column"),
    ],
)
def test_objective_names_that_would_overwrite_each_other_are_refused(names, match):
    with pytest.raises(HwnasError, match=match):
        SearchProblem(Custom(names=names), 10)


def test_an_evaluator_that_always_fails_stops_early_and_says_why(tmp_path):
    """A broken evaluator used the whole budget and finished 'OK' with an empty front."""
    from hwnas.registry import BENCHMARKS

    p = SearchProblem(Custom(fail_first=10**6), 200)
    with pytest.raises(EvaluatorError, match="all failed.*my evaluator is broken") as caught:
        ALGORITHMS.get("nsga2")(seed=0).run(p)
    assert "--retry-failed" not in str(caught.value)  # nothing stored: nothing to retry
    assert FAILED_START <= p.n_evaluated < 200 and not any(p.ok)
    # a budget under the limit stops at its end, with the same error
    with pytest.raises(EvaluatorError, match="the first 4 evaluations all failed"):
        ALGORITHMS.get("random")(seed=0).run(SearchProblem(Custom(fail_first=10**6), 4))
    # some failures first, then answers: the search goes on (LINAS fits once it can)
    name = "custom-failing-first"
    if name not in BENCHMARKS.names():
        BENCHMARKS.register(name)(FailingFirst)
    s = run_search(
        {"benchmark": name, "algorithm": "linas[n_init=5]", "evaluations": 40, "seed": 0},
        out=tmp_path / "linas",
    )
    assert s["evaluations"] == 40 and s["failed"] == 5


def test_resume_with_another_config_is_refused(tmp_path, data_dir):
    """run_search(resume=True) replayed a pixel3 search's latencies beside fpga's."""
    cfg = {
        "benchmark": "nb201",
        "benchmark_options": {"devices": "pixel3"},
        "algorithm": "random",
        "evaluations": 12,
    }
    run_search(cfg, out=tmp_path)
    other = {**cfg, "benchmark_options": {"devices": "fpga"}, "evaluations": 20}
    with pytest.raises(HwnasError, match="another config.*benchmark_options"):
        run_search(other, out=tmp_path, resume=True)
    with pytest.raises(HwnasError, match="seed: stored 0, given 3"):
        run_search({**cfg, "seed": 3}, out=tmp_path, resume=True)
    s = run_search({**cfg, "evaluations": 20}, out=tmp_path, resume=True)  # a larger budget
    assert s["evaluations"] == 20
    # the same search spelt otherwise is taken: options apart or in brackets, spaces in a
    # constraint, the data folder as an option
    same = tmp_path / "same"
    first = {**cfg, "algorithm": "nsga2[pop_size=8]", "constraints": ["latency<=5"]}
    run_search(first, out=same)
    again = {
        **first,
        "algorithm": "nsga2",
        "algorithm_options": {"pop_size": 8},
        "constraints": ["latency <= 5"],
        "benchmark_options": {"devices": "pixel3", "data_dir": str(data_dir)},
        "evaluations": 16,
    }
    assert run_search(again, out=same, resume=True)["evaluations"] == 16


def test_paths_in_a_config_are_taken(tmp_path, data_dir):
    """A Path as data_dir (top level or benchmark option) crashed the store's JSON."""
    cfg = {
        "benchmark": "nb201",
        "benchmark_options": {"data_dir": Path(data_dir)},
        "algorithm": "random",
        "evaluations": 5,
        "data_dir": Path(data_dir),
    }
    s = run_search(cfg, out=tmp_path)
    assert s["evaluations"] == 5


def test_predictor_evaluator_names_its_directions():
    """'f1' was minimised and 'top1_error' maximised by a guess from the name; a
    misspelt override was ignored."""
    from hwnas.predict.fitted import PredictorEvaluator

    def one(v):
        return np.ones(len(v))

    with pytest.raises(HwnasError, match="cannot tell whether to minimise or maximise"):
        PredictorEvaluator("nb201", {"f1": one})
    with pytest.raises(HwnasError, match="'F1', which is not an objective here"):
        PredictorEvaluator("nb201", {"f1": one}, objectives={"F1": Objective("F1", "max")})
    with pytest.raises(HwnasError, match=r"must be Objective\('f1'"):
        PredictorEvaluator("nb201", {"f1": one}, objectives={"f1": Objective("g", "max")})
    with pytest.raises(HwnasError, match="cannot tell"):
        PredictorEvaluator("nb201", {"topology_score": one})  # not top-1
    ev = PredictorEvaluator("nb201", {"accuracy_drop": one, "top1": one, "top-5": one})
    assert [o.direction for o in ev.objectives] == ["min", "max", "max"]
    ev = PredictorEvaluator(
        "nb201",
        {"f1": one, "top1_error": one, "accuracy": one},
        objectives={"f1": Objective("f1", "max", kind="quality")},
    )
    assert [o.direction for o in ev.objectives] == ["max", "min", "max"]


def test_a_search_leaves_the_matplotlib_backend_alone(tmp_path, data_dir):
    """run_search(out=...) switched the process's backend to Agg (a notebook's inline
    plots stopped showing)."""
    import matplotlib

    matplotlib.use("svg")
    cfg = {"benchmark": "nb201", "algorithm": "random", "evaluations": 5}
    run_search(cfg, out=tmp_path)
    assert matplotlib.get_backend() == "svg"
    assert (tmp_path / "pareto.png").stat().st_size > 1000


@pytest.mark.parametrize("algorithm", ["ctaea", "nsga2", "moead", "linas"])
def test_a_small_space_of_ones_own_is_searched_to_its_end(algorithm):
    """C-TAEA looped for ever on a space of 64 architectures (pymoo's archive update
    visited too few niches when the population held fewer than its reference
    directions); every algorithm ends on such a space."""
    from hwnas.search.spec import build_algorithm
    from hwnas.space.base import Dimension, SearchSpace

    class Small(SearchSpace):
        name = "small"

        @property
        def dims(self):
            return [Dimension(f"d{i}", (0, 1, 2, 3)) for i in range(3)]

        def decode(self, v):
            return [int(x) for x in v]

        def encode(self, c):
            return np.array(c, dtype=np.int64)

    class OnSmall(Evaluator):
        def __init__(self) -> None:
            self.space = Small()
            self.objectives = [Objective("a", "max", kind="quality"), Objective("b")]

        def evaluate(self, v):
            v = np.atleast_2d(v)
            return np.c_[v.sum(1) + 0.1 * v[:, 0], (v**2).sum(1)]

    p = SearchProblem(OnSmall(), 30)
    build_algorithm(algorithm, seed=0).run(p)
    assert 0 < p.n_evaluated <= 30 and all(p.ok)


class FailingRegion(Custom):
    """Cells whose first edge is an odd op, or whose fourth is avg pool, fail (an
    out-of-memory region, say): half of the space."""

    def evaluate(self, vectors):
        vectors = np.atleast_2d(vectors)
        if (vectors[:, 0] % 2 == 1).any() or (vectors[:, 3] == 4).any():
            raise MemoryError("out of memory")
        return np.stack([vectors.sum(1) + 0.1 * vectors[:, 1] ** 2, 1.0 + vectors[:, 2]], 1)


@pytest.mark.parametrize("seed", [0, 1])
def test_linas_learns_where_evaluations_fail(seed):
    """Its predictors learn only from successes, so LINAS kept proposing cells of a
    failing region (53 of 60 evaluations failed in a probe); a classifier of the
    failures keeps most of them out of its batches."""
    from hwnas.search.spec import build_algorithm

    failed = {}
    for option in ("", "[avoid_failures=false]"):
        p = SearchProblem(FailingRegion(), 80)
        build_algorithm(f"linas{option}", seed=seed).run(p)
        assert p.n_evaluated == 80
        failed[option] = 80 - sum(p.ok)
    assert failed[""] < 0.7 * failed["[avoid_failures=false]"], failed


def test_decode_and_the_evaluator_cannot_spoil_the_store(tmp_path):
    """A decode whose result JSON cannot hold stopped the search after its evaluations
    were spent (a bare TypeError from the store, the run left 'running'); an evaluator
    writing into its input array stored zeros as every architecture."""
    from hwnas.store.sqlite import ResultsStore

    class Writes(Custom):
        def evaluate(self, vectors):
            out = super().evaluate(vectors)
            vectors[:] = 0
            return out

    store = ResultsStore(tmp_path / "a.sqlite")
    run = store.create_run({}, seed=0)
    p = SearchProblem(Writes(), 12, store=store, run_id=run)
    ALGORITHMS.get("random")(seed=0).run(p)
    stored = store.evaluations(run)
    assert len(stored) == 12 and all(any(rec.vector) for rec in stored)
    assert [rec.arch_key for rec in stored] == [
        get_space("nb201").keys(np.array([r.vector]))[0] for r in stored
    ]

    class Opaque(type(get_space("nb201"))):
        def decode(self, vector):
            return object()

    ev = Custom()
    ev.space = Opaque()
    p = SearchProblem(ev, 12, store=store, run_id=store.create_run({}, seed=1))
    with pytest.raises(EvaluatorError, match="Opaque.decode failed on .*JSON"):
        ALGORITHMS.get("random")(seed=0).run(p)
    assert p.n_evaluated == 0


def test_a_search_into_a_finished_searchs_folder_says_so(tmp_path, data_dir):
    """The library replaced the folder's summary and CSVs without a word (the CLI said
    so only after the run)."""
    cfg = {"benchmark": "nb201", "algorithm": "random", "evaluations": 10, "seed": 0}
    run_search(cfg, out=tmp_path)
    with pytest.warns(UserWarning, match="holds an earlier search.*resume=True"):
        s = run_search({**cfg, "evaluations": 5}, out=tmp_path)
    assert s["evaluations"] == 5


class Depthy(Evaluator):
    """A space of 4 layers whose depth dimension leaves the deeper layers' choices
    unused (canonicalize zeroes them): 1,024 vectors, 340 distinct architectures."""

    def __init__(self) -> None:
        from hwnas.space.base import Dimension, SearchSpace

        class Space(SearchSpace):
            name = "depthy"

            @property
            def dims(self):
                return [
                    Dimension("depth", (1, 2, 3, 4)),
                    *(Dimension(f"w{i}", (8, 16, 32, 64)) for i in range(4)),
                ][:5]

            def canonicalize(self, vectors):
                x = np.array(vectors, dtype=np.int64)
                for i in range(4):
                    x[:, 1 + i] = np.where(x[:, 0] >= i, x[:, 1 + i], 0)
                return x

            def decode(self, v):
                return [int(x) for x in v]

            def encode(self, c):
                return np.array(c, dtype=np.int64)

        self.space = Space()
        self.objectives = [Objective("acc", "max", kind="quality"), Objective("flops")]

    def evaluate(self, v):
        v = np.atleast_2d(v)
        return np.c_[v.sum(1) + 0.1 * v[:, 1], (v**2).sum(1) + v[:, 0]]


@pytest.mark.parametrize("algorithm", ["random", "motpe"])
def test_a_budget_is_held_to_the_distinct_architectures(algorithm):
    """The budget was checked against the vectors (1,024 here), not the distinct
    architectures: random stopped short with advice to enlarge its population, and
    MOTPE near the end kept asking for evaluated ones, slower with every trial."""
    from hwnas.search.problem import distinct_size
    from hwnas.search.spec import build_algorithm

    ev = Depthy()
    n = distinct_size(ev.space)
    every = np.stack(np.unravel_index(np.arange(1024), ev.space.cardinalities), axis=1)
    assert ev.space.size() == 1024 and n == len(set(ev.space.keys(every))) == 340
    with pytest.warns(UserWarning, match=f"more than the {n} architectures"):
        p = SearchProblem(ev, 2000)
    t0 = time.perf_counter()
    build_algorithm(algorithm, seed=0).run(p)
    assert p.n_evaluated == n and all(p.ok)
    assert time.perf_counter() - t0 < 60


def test_a_predictor_fitted_on_ones_own_space_loads_and_predicts(tmp_path):
    """load_fitted looked the space up by name only: a predictor of an unregistered space
    failed every evaluation of a PredictorEvaluator ('unknown search space')."""
    from hwnas.predict.fitted import PredictorEvaluator, fit_predictor, load_fitted

    space = Depthy().space
    X = space.sample(40, 0)
    y = (X**2).sum(1) + X[:, 0] + 0.0
    fitted = fit_predictor(space, X, y, target="flops", model="ridge")
    assert np.corrcoef(fitted.predict(X), y)[0, 1] > 0.9
    path = fitted.save(tmp_path / "flops.pkl")
    loaded = load_fitted(path)
    with pytest.raises(HwnasError, match="'depthy' is not registered: bind it"):
        loaded.predict(X)
    ev = PredictorEvaluator(space, {"acc": lambda v: v.sum(1) * 1.0, "flops": loaded})
    p = SearchProblem(ev, 15)  # the evaluator binds its own space to the predictor
    ALGORITHMS.get("random")(seed=0).run(p)
    assert all(p.ok) and np.allclose(load_fitted(path, space=space).predict(X), fitted.predict(X))
    with pytest.raises(HwnasError, match="fitted on space 'depthy', not nb201"):
        load_fitted(path, space=get_space("nb201"))
    with pytest.raises(HwnasError, match="need at least 5 finite values"):
        fit_predictor(space, X[:3], y[:3], target="flops")


def test_mistakes_of_a_library_user_get_clear_errors():
    """Each used to fail later or cryptically (AttributeError, a seed error at run
    time, a constraint string read character by character, an empty space searched)."""
    from hwnas.registry import Registry
    from hwnas.search.spec import build_algorithm
    from hwnas.space.base import Dimension

    with pytest.raises(HwnasError, match="a search config is a dict"):
        run_search(None)  # type: ignore[arg-type]
    for seed in (-1, "1", True):
        with pytest.raises(HwnasError, match="seed must be an integer >= 0"):
            build_algorithm("random", seed=seed)
    p = SearchProblem(Custom(), 10, constraints="cost<=3")  # one constraint, not a list
    assert [str(c) for c in p.constraints] == ["cost<=3"]

    class NoSpace(Evaluator):
        def __init__(self) -> None:
            self.objectives = [Objective("a")]

        def evaluate(self, v):
            return v

    with pytest.raises(HwnasError, match="NoSpace has no space"):
        SearchProblem(NoSpace(), 5)
    with pytest.raises(HwnasError, match="dimension 'w' has no choices"):
        Dimension("w", ())
    # the same definition again (a notebook cell run twice) replaces; another is refused
    reg: Registry = Registry("thing")
    for _ in range(2):

        @reg.register("x")
        class Thing:
            pass

    assert reg._items["x"] is Thing

    with pytest.raises(HwnasError, match="'x' registered twice .*choose another name"):

        @reg.register("x")
        class Other:
            pass


def test_a_constraint_nothing_meets_is_warned_of(tmp_path):
    from hwnas.registry import BENCHMARKS

    if "custom-plain" not in BENCHMARKS.names():
        BENCHMARKS.register("custom-plain")(Custom)
    cfg = {"benchmark": "custom-plain", "algorithm": "random", "evaluations": 8, "seed": 0}
    with pytest.warns(UserWarning, match="no evaluated architecture satisfies cost<=0"):
        s = run_search({**cfg, "constraints": ["cost<=0"]})
    assert s["feasible"] == 0 and s["pareto"] == []
