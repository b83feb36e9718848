"""The CLI: real subprocesses for exit codes and error lines, CliRunner for the rest."""

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
from typer.testing import CliRunner

from hwnas.cli import app

runner = CliRunner()


def hwnas(*args, env=None):
    import os

    return subprocess.run(
        [sys.executable, "-m", "hwnas.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {}), "COLUMNS": "80"},
    )


@pytest.mark.parametrize(
    "args, env, message",
    [
        (["search", "--device", "iphone", "--out", "{tmp}"], None, "unknown device 'iphone'"),
        (["evaluate", "|nor_conv_3x3~0|+|bad|"], None, "malformed"),
        (["evaluate", "[0, 1, 2]"], None, "must have 6 entries"),
        (["evaluate", "[0, 1, 2"], None, "is not valid JSON: Expecting ',' delimiter"),
        (
            ["evaluate", "--benchmark", "ofa-resnet50", '{"d": [0], "e": [], "w": [], "x": 1}'],
            None,
            "config lacks r (keys: d, e, w, r)",
        ),
        (
            ["search", "--out", "{tmp}"],
            {"HWNAS_DATA_DIR": "{tmp}/nowhere"},
            "not found in data dir",
        ),
        (["search", "--constraint", "lat<5", "--out", "{tmp}"], None, "bad constraint"),
        (["search", "--algorithm", "foo", "--out", "{tmp}"], None, "unknown algorithm 'foo'"),
        (
            ["search", "--benchmark", "ofa-mbv3", "--device", "raspi4", "--out", "{tmp}"],
            None,
            "note10 only",
        ),
        (
            ["bench", "search-efficiency", "--benchmark", "ofa-resnet50", "--devices", "raspi4"],
            None,
            "takes no device",
        ),
        (["bench", "search-efficiency", "--devices", ",", "--out", "{tmp}"], None, "is empty"),
        (
            [
                "search",
                "--benchmark",
                "ofa-resnet50",
                "--constraint",
                "params<=1e3",
                "--out",
                "{tmp}",
            ],
            None,
            "no architecture of ofa-resnet50 satisfies params<=1000",
        ),
        (
            [
                "search",
                "--benchmark",
                "ofa-resnet50",
                "--constraint",
                "mflops<=10",
                "--out",
                "{tmp}",
            ],
            None,
            "satisfies mflops<=10 (its mflops range from 630.159",
        ),
        # brackets in the message are printed, not read as rich markup
        (
            ["search", "--algorithm", "linas[kappa=1]x", "--out", "{tmp}"],
            None,
            "bad algorithm 'linas[kappa=1]x' (expected NAME[key=value,...])",
        ),
        (
            ["search", "--algorithm", "linas[class_mean=maybe]", "--out", "{tmp}"],
            None,
            "class_mean='maybe': Input should be a valid boolean",
        ),
        (
            ["search", "--constraint", "latency<=0.001", "--out", "{tmp}"],
            None,
            "no architecture in the benchmark's table satisfies latency<=0.001",
        ),
        (["search", "--out", "{tmp}", "--data-dir", "{tmp}/corrupt"], None, "corrupt"),
        (["predictors", "evaluate", "--target", "energy"], None, "unknown target"),
        (["data", "fetch", "nope"], None, "nope"),
        (["algorithms", "nope"], None, "unknown algorithm 'nope' (known: agemoea"),
        (["search", "--retry-failed", "--out", "{tmp}"], None, "--retry-failed goes with"),
        (["devices", "--benchmark", "nope"], None, "unknown benchmark 'nope'"),
        (
            ["predictors", "evaluate", "--benchmark", "ofa-resnet50", "--target", "latency:x"],
            None,
            "has no devices: --target is one of its objectives",
        ),
        (
            ["predictors", "evaluate", "--benchmark", "ofa-resnet50", "--target", "flops"],
            None,
            "unknown target 'flops' for ofa-resnet50 (its objectives: accuracy, mflops)",
        ),
        (["compare", "{tmp}"], None, "no summary.json in"),
        (
            ["predictors", "evaluate", "--sizes", "25,abc"],
            None,
            "--sizes must be comma-separated integers, got '25,abc'",
        ),
        (["predictors", "evaluate", "--sizes", ""], None, "need at least one entry"),
        (["predictors", "evaluate", "--target", "accuracy:pixel3"], None, "only latency takes"),
        (
            ["predictors", "evaluate", "--benchmark", "ofa-mbv3", "--target", "latency:pixel3"],
            None,
            "unknown device 'pixel3' for ofa-mbv3 (its devices: note10;",
        ),
        (["predictors", "evaluate", "--target", "latency:a,latency:b"], None, "one target at"),
        (["predictors", "evaluate", "--target", "latency:"], None, "names no device after"),
        # typer's own usage errors are one line too
        (["search", "--evaluations", "0", "--out", "{tmp}"], None, "'--evaluations'"),
        (["search", "--seed", "-1", "--out", "{tmp}"], None, "'--seed'"),
        (["search", "--bogus"], None, "No such option: --bogus"),
        (["compare"], None, "Missing argument"),
        # paths that cannot be written
        (
            ["search", "--evaluations", "5", "--out", "{tmp}/afile"],
            None,
            "afile exists and is not a directory",
        ),
        (
            ["search", "--evaluations", "5", "--out", "{tmp}/afile/x"],
            None,
            "afile' is a file, not a directory",
        ),
        (["compare", "{tmp}/done", "--out", "{tmp}/x.txt"], None, "use one of the suffixes"),
        (["search", "--device", ",", "--out", "{tmp}"], None, "--device is empty"),
        (["search", "--device", "pixel3,pixel3", "--out", "{tmp}"], None, "given twice"),
        (["evaluate", "[true, 1, 1, 1, 1, 1]"], None, "must hold integers"),
        (["evaluate", "[3, 3, 1, 1, 2, 3.5]"], None, "must hold integers"),
        (
            ["evaluate", "--benchmark", "ofa-mbv3", "--bench-option", "rounds=2", "0-0"],
            None,
            "they need latency=true",
        ),
        (
            ["bench", "search-efficiency", "--devices", "pixel3,nope", "--out", "{tmp}"],
            None,
            "unknown device 'nope'",
        ),
        (
            ["search", "--evaluations", "5", "--out", "{tmp}/" + "a" * 300],
            None,
            "File name too long",
        ),
        (
            ["bench", "search-efficiency", "--benchmark", "supernet", "--out", "{tmp}"],
            None,
            "'hwnas bench search-efficiency' takes no benchmark options",
        ),
        (
            ["predictors", "evaluate", "--benchmark", "supernet", "--models", "ridge"],
            None,
            "'hwnas predictors evaluate' takes no benchmark options",
        ),
        (
            ["search", "--bench-option", "latancy=true", "--out", "{tmp}"],
            None,
            "benchmark 'nb201' has no --bench-option latancy (its options: none)",
        ),
        (
            ["evaluate", "--benchmark", "ofa-mbv3", "--bench-option", "latancy=true", "0-0"],
            None,
            "no --bench-option latancy (its options: latency, threads, rounds, agent, token_f",
        ),
        (
            [
                *("search", "--benchmark", "ofa-mbv3", "--bench-option", "latency=true"),
                *("--bench-option", "latency=false", "--out", "{tmp}"),
            ],
            None,
            "option latency given twice ('latency=false'); give it once",
        ),
    ],
)
def test_bad_input_one_line_exit_2(args, env, message, tmp_path, data_dir):
    corrupt = tmp_path / "corrupt" / "nb201"
    corrupt.mkdir(parents=True)
    (corrupt / "nb201_acc200_latency27.csv.gz").write_bytes(b"not gzip at all")
    (tmp_path / "afile").write_text("")
    (tmp_path / "done").mkdir()
    summary = {"benchmark": "nb201", "algorithm": "random", "evaluations": 0, "pareto": []}
    objectives = [{"name": "accuracy", "direction": "max"}, {"name": "latency"}]
    (tmp_path / "done" / "summary.json").write_text(
        json.dumps({**summary, "objectives": objectives})
    )
    fill = lambda s: s.replace("{tmp}", str(tmp_path))  # noqa: E731
    res = hwnas(*map(fill, args), env={k: fill(v) for k, v in (env or {}).items()})
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error:") and message in lines[0]
    assert "Traceback" not in res.stderr


def test_search_cli_warm_start(tmp_path, data_dir):
    a, b = tmp_path / "a", tmp_path / "b"
    res = runner.invoke(
        app, ["search", "--algorithm", "random", "--evaluations", "20", "--out", str(a)]
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app,
        [
            "search",
            "--device",
            "fpga",
            "--evaluations",
            "25",
            "--warm-start",
            str(a),
            "--out",
            str(b),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    front = [ln.split(",")[0] for ln in (a / "pareto.csv").read_text().splitlines()[1:]]
    assert json.loads(res.stdout)["warm_start"] == len(front) > 0
    first = [ln.split(",")[1] for ln in (b / "evaluations.csv").read_text().splitlines()[1:]]
    assert set(first[: len(front)]) == set(front)
    res = runner.invoke(app, ["search", "--resume", str(b), "--warm-start", str(a)])
    assert "drop --warm-start (only --evaluations" in str(res.exception)  # exit 2 in the CLI


def test_search_cli_writes_outputs(tmp_path, data_dir):
    res = runner.invoke(
        app,
        ["search", "--algorithm", "nsga2", "--evaluations", "60", "--out", str(tmp_path), "--json"],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["evaluations"] == 60 and 0 < summary["hv_fraction"] <= 1
    assert (tmp_path / "pareto.png").stat().st_size > 5000
    assert (tmp_path / "progress.png").stat().st_size > 5000
    pareto = (tmp_path / "pareto.csv").read_text().splitlines()
    assert pareto[0].startswith("arch_key,arch,accuracy,latency")
    assert len(pareto) == len(summary["pareto"]) + 1


def test_search_cli_human_output(tmp_path, data_dir):
    args = ["search", "--algorithm", "random", "--evaluations", "30", "--out", str(tmp_path)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "HV fraction" in res.stdout and "Pareto front" in res.stdout
    assert "(%)" in res.stdout and "(ms)" in res.stdout  # the front's columns have units
    # the same --out again: a second run beside the first, and the user is told so (a
    # warning of the library's, shown as one line by main(); pytest records it here)
    with pytest.warns(UserWarning, match="holds an earlier search.*--resume"):
        res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    # a search refused at the start stores nothing, so no such warning either
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = runner.invoke(app, [*args, "--constraint", "latency<=0.001"])
    assert res.exit_code != 0
    assert not [w for w in caught if "earlier search" in str(w.message)]


def test_compare_searches(tmp_path, data_dir):
    for alg, dev in (("random", "pixel3"), ("nsga2", "pixel3"), ("random", "fpga")):
        args = ["search", "--algorithm", alg, "--device", dev, "--evaluations", "30"]
        res = runner.invoke(app, [*args, "--out", str(tmp_path / f"{alg}-{dev}")])
        assert res.exit_code == 0, res.output
    runs = [str(tmp_path / d) for d in ("random-pixel3", "nsga2-pixel3", "random-fpga")]
    png = tmp_path / "cmp" / "fronts.png"
    res = runner.invoke(app, ["compare", *runs, "--out", str(png), "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [(r["algorithm"], r["on"]) for r in rows] == [
        ("random", "nb201 cifar10 pixel3"),
        ("nsga2", "nb201 cifar10 pixel3"),
        ("random", "nb201 cifar10 fpga"),
    ]
    for r, d in zip(rows, runs, strict=True):
        summary = json.loads((tmp_path / d / "summary.json").read_text())
        assert r["hv_fraction"] == summary["hv_fraction"] and r["evaluations"] == 30
        assert r["front_size"] == len(summary["pareto"])
    assert png.stat().st_size > 5000
    # another space's front does not compare
    ofa = tmp_path / "ofa"
    res = runner.invoke(
        app, ["search", "--benchmark", "ofa-mbv3", "--evaluations", "10", "--out", str(ofa)]
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["compare", runs[0], str(ofa), "--out", str(png)])
    assert res.exit_code != 0 and "do not compare" in str(res.exception)
    # --out a directory: the plot goes inside it, and the table says where
    res = runner.invoke(app, ["compare", *runs[:2], "--out", str(tmp_path / "cmp")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 5000
    assert "compare.png" in res.stdout.replace("\n", "")
    # searches under different constraints: compared, with a warning
    args = ["search", "--algorithm", "random", "--evaluations", "30", "--constraint"]
    res = runner.invoke(app, [*args, "latency<=10", "--out", str(tmp_path / "c")])
    assert res.exit_code == 0, res.output
    with pytest.warns(UserWarning, match="different constraints"):
        res = runner.invoke(app, ["compare", runs[0], str(tmp_path / "c"), "--out", str(png)])
    assert res.exit_code == 0, res.output


def test_listings(data_dir):
    for cmd, expect in [
        (["spaces", "--json"], "ofa-mbv3"),
        (["benchmarks", "--json"], "nb201"),
        (["algorithms", "--json"], "linas"),
        (["devices", "--benchmark", "nb201", "--json"], "raspi4"),
        (["devices", "--benchmark", "ofa-mbv3", "--json"], "note10"),
        (["predictors", "list", "--json"], "svr"),
    ]:
        res = runner.invoke(app, cmd)
        assert res.exit_code == 0, res.output
        assert expect in json.loads(res.stdout).__repr__()
    # a benchmark whose costs are computed lists no device, says why, and succeeds
    res = runner.invoke(app, ["devices", "--benchmark", "ofa-resnet50", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout) == []
    assert "has no devices: its costs are computed" in res.stderr


def test_evaluate_cli(data_dir):
    arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    res = runner.invoke(app, ["evaluate", arch, "--device", "pixel3,fpga", "--json"])
    assert res.exit_code == 0, res.output
    (row,) = json.loads(res.stdout)
    assert row["arch"] == arch and row["accuracy"] > 94 and row["latency_fpga"] > 0
    # the arch_key column of evaluations.csv / pareto.csv and a JSON vector work too
    res = runner.invoke(app, ["evaluate", "3-3-3-1-3-3", "[3, 3, 3, 1, 3, 3]", "--json"])
    assert res.exit_code == 0, res.output
    assert [r["arch"] for r in json.loads(res.stdout)] == [arch, arch]
    assert [r["arch_key"] for r in json.loads(res.stdout)] == ["3-3-3-1-3-3"] * 2
    # --bench-option: an OFA subnet's latency measured here instead of Note10's table
    small = "-".join(["0"] * 46)
    opts = ["--benchmark", "ofa-mbv3", "--json"]
    res = runner.invoke(app, ["evaluate", small, *opts, "--bench-option", "latency=true"])
    assert res.exit_code == 0, res.output
    (measured,) = json.loads(res.stdout)
    (table,) = json.loads(runner.invoke(app, ["evaluate", small, *opts]).stdout)
    assert measured["accuracy"] == table["accuracy"] and measured["latency"] > 0
    assert measured["latency"] != table["latency"]  # Note10's is 17.7 ms


def test_algorithms_lists_one_algorithms_options():
    res = runner.invoke(app, ["algorithms", "linas", "--json"])
    assert res.exit_code == 0, res.output
    opts = {o["name"]: o for o in json.loads(res.stdout)}
    assert opts["class_mean"] | {"help": ""} == {
        "name": "class_mean", "type": "bool", "default": True, "help": ""
    }  # fmt: skip
    assert "measured mean quality" in opts["class_mean"]["help"]
    assert opts["batch_size"]["type"] == "int | None" and "seed" not in opts
    res = runner.invoke(app, ["algorithms", "mnas"])
    assert res.exit_code == 0 and "target" in res.stdout and "-0.07" in res.stdout
    res = runner.invoke(app, ["algorithms", "random"])  # not an empty table
    assert res.stdout.strip() == "random takes no options (--seed sets its random draws)"


def test_user_warning_is_one_line(data_dir):
    args = ["predictors", "evaluate", "--target", "latency:fpga", "--models", "ridge"]
    res = hwnas(*args, "--sizes", "25,20000", "--trials", "1", "--test-size", "500")
    assert res.returncode == 0, res.stderr
    (line,) = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert line.startswith("warning: skipping training size 20000") and "test set" in line
    assert "UserWarning" not in res.stderr and "cli.py" not in res.stderr


def test_predictors_evaluate_cli(tmp_path, data_dir):
    base = ["predictors", "evaluate", "--target", "latency:fpga", "--test-size", "500"]
    opts = ["--models", "ridge,cart", "--sizes", "25,100", "--trials", "2", "--json"]
    res = runner.invoke(app, [*base, *opts, "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert {(r["model"], r["size"]) for r in rows} == {
        ("ridge", 25),
        ("ridge", 100),
        ("cart", 25),
        ("cart", 100),
    }
    ridge100 = next(r for r in rows if r["model"] == "ridge" and r["size"] == 100)
    assert ridge100["kendall_tau_median"] > 0.9  # fpga latency is near additive
    assert (tmp_path / "kendall_tau.png").is_file() and (tmp_path / "summary.csv").is_file()
    assert ridge100["view"] == 0  # fpga latency: one price per op
    assert ridge100["view_name"] == "op counts"
    # the table says which feature view the CV chose
    res = runner.invoke(app, [*base, "--models", "ridge", "--sizes", "100", "--trials", "1"])
    assert res.exit_code == 0, res.output
    assert "features" in res.output and "op counts (4 of 87)" in res.output
    # accuracy: the table names the dataset, the benchmark's default too
    acc = ["predictors", "evaluate", "--target", "accuracy", "--test-size", "200"]
    res = runner.invoke(app, [*acc, "--models", "ridge", "--sizes", "25", "--trials", "1"])
    assert res.exit_code == 0, res.output
    assert "accuracy on nb201 (cifar10)" in " ".join(res.output.split())


def test_predictors_evaluate_warns_when_near_zero_values_inflate_the_mape(data_dir):
    """NB201's pixel3 has ~200 cells measured at a few microseconds (no op computed):
    the MAPE is dominated by them, and the CLI says so; fpga has none."""
    args = ["predictors", "evaluate", "--models", "ridge", "--sizes", "25", "--trials", "1"]
    res = hwnas(*args, "--target", "latency:pixel3", "--test-size", "500", "--json")
    assert res.returncode == 0, res.stderr
    json.loads(res.stdout)  # the note goes to stderr, the JSON stays clean
    assert "note: 203 of the 15625 target values are under 1 % of their median" in res.stderr
    res = hwnas(*args, "--target", "latency:fpga", "--test-size", "500")
    assert res.returncode == 0 and "note:" not in res.stderr


def test_predictor_data_uses_linas_feature_views(data_dir):
    from hwnas.cli import _predictor_data
    from hwnas.space import get_space

    sp = get_space("nb201")
    all_v = sp.all_vectors()
    # two cells that differ only on dead edges (1<-0 none: 2<-1 and 3<-1 are dead)
    a, b = (int(sp.index_of(np.array(v))[0]) for v in ([0, 3, 0, 0, 0, 3], [0, 3, 2, 0, 4, 3]))
    Xa, _, views_a, names_a = _predictor_data("nb201", "accuracy", "cifar10", None)
    Xl, yl, views_l, names_l = _predictor_data("nb201", "latency:pixel3", "cifar10", None)
    assert names_a is None and names_l[1] == "computed-op counts"
    assert len(Xa) == len(all_v) == len(yl)
    assert views_a is None and len(views_l) == 4
    assert (views_l[0] == np.arange(79, 83)).all()  # the op counts
    assert (views_l[1] == np.arange(83, 87)).all()  # the computed-op counts
    assert (views_l[2] == np.arange(30)).all()  # the one-hot ops
    assert (views_l[3] == np.arange(79)).all()  # the graph features
    assert (Xa[a] == Xa[b]).all()  # accuracy: same function, same features
    assert not (Xl[a] == Xl[b]).all()  # latency: the dead edges still run
    assert (Xl == sp.cost_features(all_v)).all()


def test_bench_search_efficiency_cli(tmp_path, data_dir):
    res = runner.invoke(
        app,
        [
            "bench",
            "search-efficiency",
            "--devices",
            "fpga",
            "--algorithms",
            "random,nsga2[pop_size=10]",
            "--evaluations",
            "40",
            "--seeds",
            "2",
            "--first-seed",
            "5",
            "--out",
            str(tmp_path),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    tables = json.loads(res.stdout)  # the three tables the text prints
    rows = tables["summary"]
    assert list(dict.fromkeys(r["algorithm"] for r in rows)) == ["random", "nsga2[pop_size=10]"]
    assert {r["algorithm"] for r in tables["paired"]} == {"nsga2[pop_size=10]"}
    assert [r["algorithm"] for r in tables["reach"]] == ["random", "nsga2[pop_size=10]"]
    results = json.loads((tmp_path / "results.json").read_text())
    assert sorted({r["seed"] for r in results}) == [5, 6]
    for name in ("histories.csv", "summary.csv", "hv_fraction.png", "front_recall.png", "igd.png"):
        assert (tmp_path / name).is_file()
    lines = (tmp_path / "histories.csv").read_text().splitlines()
    assert len(lines) == 1 + 2 * 2 * 40
    # the summary reports the budget's checkpoints only (50 and 100 are beyond 40)
    summary = (tmp_path / "summary.csv").read_text().splitlines()
    assert [ln.split(",")[2] for ln in summary[1:]] == ["40", "40"]
    # two algorithms: the second against the first, paired by seed
    paired = (tmp_path / "paired.csv").read_text().splitlines()
    assert paired[0].startswith("device,algorithm,baseline,evaluations,seeds,hv_fraction_")
    assert paired[1].startswith("fpga,nsga2[pop_size=10],random,40,2,")


def test_search_cli_algorithm_spec_and_human_tables(tmp_path, data_dir):
    """``--algorithm NAME[k=v]`` runs the variant, and its name survives rich's tables."""
    res = runner.invoke(
        app,
        [
            "search",
            "--algorithm",
            "nsga2[pop_size=10]",
            "--evaluations",
            "20",
            "--out",
            str(tmp_path / "a"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("nsga2[pop_size=10]: 20 evaluations")
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["algorithm"] == (
        "nsga2[pop_size=10]"
    )
    args = ["search", "--algorithm", "nsga2", "--option", "pop_size=10", "--evaluations", "20"]
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("nsga2[pop_size=10]: 20 evaluations")  # as the bracket form
    # compare names both runs the same way, and neither as plain nsga2
    res = runner.invoke(app, ["compare", str(tmp_path / "a"), str(tmp_path / "o"), "--json",
                              "--out", str(tmp_path / "c.png")])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert [r["algorithm"] for r in json.loads(res.stdout)] == ["nsga2[pop_size=10]"] * 2
    res = runner.invoke(
        app,
        [
            "bench",
            "search-efficiency",
            "--devices",
            "fpga",
            "--algorithms",
            "random,nsga2[pop_size=10]",
            "--evaluations",
            "20",
            "--seeds",
            "2",
            "--out",
            str(tmp_path / "b"),
        ],
        env={"COLUMNS": "200"},
    )
    assert res.exit_code == 0, res.output
    assert "nsga2[pop_size=10]" in res.stdout and "median [min, max]" in res.stdout
    assert "each against random, paired by seed" in res.stdout


def test_search_cli_no_feasible_architecture(tmp_path, data_dir):
    """A benchmark without a table cannot tell beforehand (a budget only its smallest
    subnet meets); the search says so after, and exits 4."""
    res = runner.invoke(
        app,
        [
            "search",
            "--benchmark",
            "ofa-mbv3",
            "--algorithm",
            "random",
            "--constraint",
            "latency<=9.9",  # the smallest subnet alone (9.89 ms on Note10)
            "--evaluations",
            "5",
            "--out",
            str(tmp_path),
        ],
    )
    assert res.exit_code == 4, res.output  # finished, with nothing meeting the constraint
    assert "none of the 5 evaluated architectures satisfies latency<=9.9" in res.stdout
    assert json.loads((tmp_path / "summary.json").read_text())["feasible"] == 0


def test_every_command_summary_is_one_line():
    """The command lists show a command's first paragraph as is: a wrapped one breaks there."""
    import typer

    def walk(command, path):
        for name, sub in (getattr(command, "commands", None) or {}).items():
            yield from walk(sub, [*path, name])
        yield " ".join(path), (command.help or "").strip().split("\n\n")[0]

    wrapped = [p for p, first in walk(typer.main.get_command(app), ["hwnas"]) if "\n" in first]
    assert wrapped == []


def test_a_long_front_is_shown_spread_from_end_to_end():
    """Past 40 rows the table shows rows spread over the whole front (its best end too),
    not the 40 cheapest."""
    from hwnas.cli import front_rows

    assert front_rows(12) == list(range(12))
    rows = front_rows(53)
    assert len(rows) == 40 and rows[0] == 0 and rows[-1] == 52 and rows == sorted(set(rows))


def test_every_seed_option_refuses_a_negative_seed():
    """NumPy refuses a negative seed with a traceback deep in the work: every command's
    seed option is bounded, so the CLI answers first with one line and exit code 2."""
    import typer

    def walk(command, path):
        for name, sub in (getattr(command, "commands", None) or {}).items():
            yield from walk(sub, [*path, name])
        for p in getattr(command, "params", []):
            if "seed" in p.name:
                yield " ".join(path), p

    seeds = list(walk(typer.main.get_command(app), ["hwnas"]))
    assert len(seeds) >= 15 and [path for path, p in seeds if p.min is None] == []
    r = runner.invoke(app, ["predictors", "evaluate", "--models", "ridge", "--seed", "-5"])
    assert r.exit_code == 2 and "greater than or equal to 0" in r.output


@pytest.mark.parametrize(
    "benchmark, target",
    [("ofa-mbv3", "latency"), ("ofa-resnet50", "mflops"), ("hat", "latency:")],
)
def test_predictors_evaluate_picks_a_target_the_benchmark_has(benchmark, target, data_dir):
    """Left out, --target is the benchmark's latency (on its first device) or first cost,
    not NB201's latency:pixel3 (which every other benchmark refused)."""
    args = ["predictors", "evaluate", "--benchmark", benchmark, "--models", "ridge"]
    res = runner.invoke(app, [*args, "--sizes", "25", "--trials", "1", "--test-size", "50",
                              "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    from hwnas.cli import _default_target

    assert _default_target(benchmark, None).startswith(target)


def test_resuming_a_finished_search_says_nothing_new_was_run(tmp_path, data_dir):
    out = tmp_path / "s"
    assert runner.invoke(app, ["search", "--evaluations", "8", "--out", str(out)]).exit_code == 0
    res = runner.invoke(app, ["search", "--resume", str(out)])
    assert res.exit_code == 0 and "had finished: nothing new was evaluated" in res.stderr
    res = runner.invoke(app, ["search", "--resume", str(out), "--retry-failed"])
    assert res.exit_code == 0 and "held no failed evaluation to retry" in res.stderr
    res = runner.invoke(app, ["search", "--resume", str(out), "--evaluations", "10"])
    assert res.exit_code == 0 and "had finished" not in res.stderr
    assert json.loads((out / "summary.json").read_text())["evaluations"] == 10


def test_a_search_whose_every_evaluation_failed_stops_and_says_why(tmp_path, data_dir, monkeypatch):
    from hwnas.bench.nb201 import NB201Benchmark

    table = NB201Benchmark.evaluate

    def broken(self, vectors):  # the whole table (the exact front) still reads
        if len(vectors) < 1000:
            raise RuntimeError("the device is gone")
        return table(self, vectors)

    monkeypatch.setattr(NB201Benchmark, "evaluate", broken)
    res = runner.invoke(app, ["search", "--evaluations", "5", "--out", str(tmp_path / "s")])
    # every evaluation failing is the evaluator's trouble: the search stops and says why
    from hwnas.search.problem import EvaluatorError

    assert isinstance(res.exception, EvaluatorError), res.output  # main(): one line, exit 2
    said = str(res.exception)
    assert "the first 5 evaluations all failed" in said and "the device is gone" in said
    assert "--retry-failed" in said and f"--resume {tmp_path / 's'}" in said
