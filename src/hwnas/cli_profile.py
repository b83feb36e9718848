"""CLI commands of the hardware-aware pipeline: profile a space, lookup tables, predictors
on measured data.

``register(app)`` adds to the main ``hwnas`` app:

* ``hwnas profile --space S --samples N --out DIR`` — measure stratified subnets
  (resumable; ``--agent URL --token-file F`` measures on a device agent);
* ``hwnas lut build --space S --out F.json [--from-run DIR]`` and
  ``hwnas lut evaluate --lut F.json --run DIR`` — per-block latency tables;
* ``hwnas predictors fit --run DIR --target latency --model auto --out P.joblib`` and
  ``hwnas predictors evaluate-run --run DIR`` — predictors on the measurements.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from hwnas.cli_measure import _user_errors, check_timeout, int_list
from hwnas.errors import HwnasError
from hwnas.report.progress import progress_bar


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------
def _settings(
    runtime: str,
    batch_size: int,
    threads: int,
    warmup: int,
    rounds: int,
    repeats: int,
    seed: int,
    provider: str = "auto",
) -> Any:
    from hwnas.measure.latency import MeasureSettings

    if runtime.lower() not in ("onnxruntime", "ort", "onnx"):
        raise HwnasError(
            f"subnets are exported to ONNX and measured with onnxruntime; runtime {runtime!r} "
            "is not supported here"
        )
    return MeasureSettings(
        runtime="onnxruntime",
        batch_size=batch_size,
        intra_op_threads=threads,
        inter_op_threads=1,
        provider=provider,
        warmup=warmup,
        rounds=rounds,
        repeats_per_round=repeats,
        seed=seed,
    )


def _measurer(settings: Any, agent: str, token_file: Path | None, timeout_s: float) -> Any:
    from hwnas.measure.measurer import LocalMeasurer, RemoteMeasurer

    check_timeout(timeout_s)
    if agent:
        from hwnas.measure.agent import AgentClient, read_token_file

        if token_file is None:
            raise HwnasError("--agent needs --token-file")
        client = AgentClient(agent, read_token_file(token_file), timeout_s=timeout_s)
        # asked now (answered at once, even while it measures): a wrong URL or token, or
        # more threads than it has cores, fails before any subnet is exported or stored
        cores = (client.info().get("limits") or {}).get("max_threads")
        threads = max(settings.intra_op_threads, settings.inter_op_threads)
        if cores and threads > int(cores):
            raise HwnasError(f"{threads} threads: the agent at {client.url} has {cores} core(s)")
        return RemoteMeasurer(client, settings)
    if token_file is not None:
        raise HwnasError("--token-file is only used with --agent")
    return LocalMeasurer(settings)


def _torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(max(1, threads))


def _warn_other_setup(settings: Any, measurer: Any, data: Any, run: Path) -> None:
    """``lut build --from-run``: warn when the blocks are measured on another device, host
    or with other threads than the run's networks were (the table would not stand for
    them), naming both."""
    import warnings

    from hwnas.measure.host import host_info
    from hwnas.measure.lut import setup_differences
    from hwnas.measure.measurer import LocalMeasurer
    from hwnas.measure.profile import _describe_measurer

    device = _describe_measurer(measurer)
    host = host_info() if isinstance(measurer, LocalMeasurer) else {}
    differ = setup_differences(
        {"device": device, "settings": settings.to_dict(), "host": host},
        {"device": data.run["config"].get("device"), "settings": data.settings, "host": data.host},
    )
    if differ:
        hint = ""
        run_device = data.run["config"].get("device") or {}
        if run_device.get("measurer") == "remote" and run_device != device:
            hint = f" (--agent {run_device.get('agent')} --token-file F measures there)"
        warnings.warn(
            f"the blocks are measured with another setup than {run} was: "
            f"{', '.join(differ)}; the table's sums would not stand for its networks{hint}",
            stacklevel=2,
        )


def _build_flags(lut: Any) -> str:
    """The ``lut build`` options that measure as ``lut`` was measured (to extend it)."""
    flags = (
        ("--batch-size", "batch_size"),
        ("--threads", "intra_op_threads"),
        ("--warmup", "warmup"),
        ("--rounds", "rounds"),
        ("--repeats", "repeats_per_round"),
        ("--seed", "seed"),
    )
    out = "".join(f" {flag} {lut.settings[k]}" for flag, k in flags if k in lut.settings)
    if lut.device.get("measurer") == "remote":
        out += f" --agent {lut.device.get('agent')} --token-file F"
    return out


def _check_space(space: str, command: str) -> None:
    if space not in ("mbv3-cifar", "mbv3-ramnas"):
        raise HwnasError(f"unknown space '{space}' ({command} supports mbv3-cifar, mbv3-ramnas)")


def _echo_json(obj: Any) -> None:
    from hwnas.predict.fitted import _json_default

    typer.echo(json.dumps(obj, indent=2, default=_json_default))


def _table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 140))
    table = Table(title=title, title_justify="left")
    for c in columns:
        table.add_column(c, justify="right" if c != columns[0] else "left")
    for r in rows:
        table.add_row(*r)
    console.print(table)


def _f(x: Any, digits: int = 3) -> str:
    try:
        return f"{float(x):.{digits}f}"
    except (TypeError, ValueError):
        return "-"


def _predictors_group(app: typer.Typer) -> typer.Typer:
    """The app's ``predictors`` group (found on ``app`` itself, so this works whether the
    CLI module was imported as ``hwnas.cli`` or run as ``__main__``)."""
    for info in app.registered_groups:
        if info.name == "predictors" and info.typer_instance is not None:
            return info.typer_instance
    group = typer.Typer(help="Fit and judge cheap predictors.", no_args_is_help=True)
    app.add_typer(group, name="predictors")
    return group


# Shared options (typer.Option objects may be reused across commands).
_RUNTIME = typer.Option("onnxruntime", "--runtime", help="Runtime: onnxruntime.")
_BATCH = typer.Option(1, "--batch-size", help="Batch size.")
_THREADS = typer.Option(
    1,
    "--threads",
    help="Intra-op threads of the runtime (and torch); 0: the runtime's default, all cores.",
)
_WARMUP = typer.Option(10, "--warmup", help="Warm-up runs per model.")
_ROUNDS = typer.Option(20, "--rounds", help="Rounds (models of a group interleaved).")
_REPEATS = typer.Option(5, "--repeats", help="Timed runs per model per round.")
_AGENT = typer.Option("", "--agent", help="Measure on a device agent at this URL.")
_TOKEN = typer.Option(None, "--token-file", help="Token file for --agent (mode 0600).")
_TIMEOUT = typer.Option(600.0, "--timeout-s", help="Time-out of one agent request, seconds.")
_JSON = typer.Option(False, "--json", help="Print JSON instead of a table.")


def register(app: typer.Typer) -> None:
    """Add ``profile``, the ``lut`` group and ``predictors fit`` / ``evaluate-run``."""

    # ---- profile ------------------------------------------------------------------------
    @app.command("profile")
    @_user_errors
    def profile_cmd(
        space: str = typer.Option("mbv3-cifar", "--space", help="mbv3-cifar or mbv3-ramnas."),
        samples: int = typer.Option(
            300,
            "--samples",
            help="Subnets to measure (>= 2); more than --out holds grows that profile.",
        ),
        out: Path = typer.Option(..., "--out", help="Run directory (results.sqlite, CSV)."),
        runtime: str = _RUNTIME,
        batch_size: int = _BATCH,
        threads: int = _THREADS,
        warmup: int = _WARMUP,
        rounds: int = _ROUNDS,
        repeats: int = _REPEATS,
        group_size: int = typer.Option(8, "--group-size", help="Subnets measured together."),
        anchor: bool = typer.Option(
            True,
            "--anchor/--no-anchor",
            help="Correct drift between groups by a subnet measured in every group.",
        ),
        seed: int = typer.Option(
            0, "--seed", min=0, help="Seed of the sample and the round order."
        ),
        num_classes: int | None = typer.Option(
            None, "--num-classes", min=1, help="Classes of the head (space default: 10 / 1000)."
        ),
        in_channels: int = typer.Option(
            3, "--in-channels", min=1, help="Input channels of the stem (1 for grayscale)."
        ),
        input_size: int | None = typer.Option(
            None,
            "--input-size",
            min=1,
            help="Image size the deployed networks take (resized inside to each subnet's "
            "resolution); default: each subnet's resolution.",
        ),
        agent: str = _AGENT,
        token_file: Path = _TOKEN,
        timeout_s: float = _TIMEOUT,
        resume: bool = typer.Option(
            True, "--resume/--no-resume", help="Continue a profile already in --out."
        ),
        as_json: bool = _JSON,
    ) -> None:
        """Measure subnets of a space spread over its size range; resumable."""
        from hwnas.measure.profile import ProfileTerminated, profile_space
        from hwnas.process import keyboard_interrupt_handled

        _check_space(space, "profile")
        if samples < 2:
            raise HwnasError(f"--samples must be >= 2, got {samples}")
        settings = _settings(runtime, batch_size, threads, warmup, rounds, repeats, seed)
        measurer = _measurer(settings, agent, token_file, timeout_s)
        _torch_threads(threads)
        try:
            with progress_bar(f"profiling {space}", enabled=not as_json) as update:
                summary = profile_space(
                    space,
                    samples,
                    out,
                    settings,
                    measurer=measurer,
                    seed=seed,
                    progress=update,
                    resume=resume,
                    group_size=group_size,
                    anchor=anchor,
                    num_classes=num_classes,
                    in_channels=in_channels,
                    input_size=input_size,
                )
        except (KeyboardInterrupt, ProfileTerminated) as exc:
            keyboard_interrupt_handled()
            what = "terminated" if isinstance(exc, ProfileTerminated) else "interrupted"
            typer.echo(
                f"{what}; run the same command again to continue (what {out} holds is kept)",
                err=True,
            )
            # SystemExit: the app adds no generic 'interrupted' line
            sys.exit(exc.code if isinstance(exc, ProfileTerminated) else 130)
        if as_json:
            _echo_json(summary)
            return
        _table(
            f"profile of {space} in {out}",
            ["stored", "new", "failed", "unstable", "min ms", "median ms", "max ms", "CV", "s/net"],
            [
                [
                    str(summary["stored"]),
                    str(summary["measured"]),
                    str(summary["failed"]),
                    str(summary["unstable"]),
                    _f(summary.get("latency_ms_min")),
                    _f(summary.get("latency_ms_median")),
                    _f(summary.get("latency_ms_max")),
                    _f(summary.get("robust_cv_median")),
                    _f(summary.get("seconds_per_subnet"), 2),
                ]
            ],
        )

    # ---- lut ----------------------------------------------------------------------------
    lut_app = typer.Typer(help="Per-block latency lookup tables.", no_args_is_help=True)

    @lut_app.command("build")
    @_user_errors
    def lut_build(
        space: str = typer.Option("mbv3-cifar", "--space", help="mbv3-cifar or mbv3-ramnas."),
        out: Path = typer.Option(..., "--out", help="Table file (JSON); extended if present."),
        from_run: Path = typer.Option(
            None, "--from-run", help="Only the blocks of the networks of this profile run."
        ),
        runtime: str = _RUNTIME,
        batch_size: int = _BATCH,
        threads: int = _THREADS,
        warmup: int = _WARMUP,
        rounds: int = _ROUNDS,
        repeats: int = _REPEATS,
        group_size: int = typer.Option(16, "--group-size", help="Blocks measured together."),
        num_classes: int | None = typer.Option(
            None,
            "--num-classes",
            min=1,
            help="Classes of the head (default: the space's, or the --from-run profile's).",
        ),
        seed: int = typer.Option(0, "--seed", min=0, help="Seed of the round order."),
        agent: str = _AGENT,
        token_file: Path = _TOKEN,
        timeout_s: float = _TIMEOUT,
        as_json: bool = _JSON,
    ) -> None:
        """Measure every distinct block of a space (stem, MBConv in context, head)."""
        from hwnas.errors import check_output_file
        from hwnas.measure.lut import LatencyLUT, build_lut, check_profile_networks

        _check_space(space, "lut build")
        check_output_file(out, "lut.json")
        before = len(LatencyLUT.load(out)) if out.is_file() else 0
        vectors = None
        if from_run is not None:
            from hwnas.measure.profile import load_profile

            data = load_profile(from_run)
            if data.space_name != space:
                raise HwnasError(f"{from_run} profiles {data.space_name}, not {space}")
            if len(data) == 0:
                raise HwnasError(
                    f"{from_run} holds no successful measurement: no networks to build the "
                    "table for"
                )
            check_profile_networks(data.run["config"], from_run)
            run_nc = data.run["config"].get("num_classes")
            if num_classes is not None and run_nc is not None and num_classes != run_nc:
                raise HwnasError(
                    f"--num-classes {num_classes}, but {from_run} measured networks with "
                    f"{run_nc} classes"
                )
            num_classes = num_classes if num_classes is not None else run_nc
            vectors = data.vectors
        settings = _settings(runtime, batch_size, threads, warmup, rounds, repeats, seed)
        measurer = _measurer(settings, agent, token_file, timeout_s)
        if from_run is not None:
            _warn_other_setup(settings, measurer, data, from_run)
        _torch_threads(threads)
        with progress_bar(f"lut {space}", enabled=not as_json) as update:
            lut = build_lut(
                space,
                settings,
                measurer=measurer,
                vectors=vectors,
                num_classes=num_classes,
                group_size=group_size,
                out=out,
                progress=update,
                seed=seed,
            )
        info = {"out": str(out), "space": lut.space, "entries": len(lut)}
        info["measured"] = len(lut) - before
        if as_json:
            _echo_json(info)
        else:
            typer.echo(
                f"wrote {len(lut)} block latencies of {lut.space} to {out} "
                f"({info['measured']} measured now, {before} already there)"
            )

    @lut_app.command("evaluate")
    @_user_errors
    def lut_evaluate(
        lut_path: Path = typer.Option(..., "--lut", help="Table built by 'hwnas lut build'."),
        run: Path = typer.Option(..., "--run", help="Profile run directory."),
        as_json: bool = _JSON,
    ) -> None:
        """Kendall tau of the table's sums against whole networks measured by a profile."""
        from hwnas.measure.lut import LatencyLUT, evaluate_lut

        lut = LatencyLUT.load(lut_path)
        res = evaluate_lut(lut, run)
        if as_json:
            _echo_json(res)
            return
        _table(
            f"LUT sum vs measured ({res['n']} networks, {res['n_missing']} not covered)",
            ["ranking", "kendall_tau", "spearman_rho", "MAPE %", "sum/measured"],
            [
                [
                    "LUT sum",
                    _f(res["kendall_tau"]),
                    _f(res["spearman_rho"]),
                    _f(res["mape"], 1),
                    _f(res["ratio_median"]),
                ],
                ["FLOPs", _f(res.get("flops_kendall_tau")), "-", "-", "-"],
            ],
        )
        typer.echo(
            "note: block sums rank networks (kendall_tau) but are not their latency: each "
            "block is timed alone (per-call overhead, no fusion or cache effects across "
            f"blocks), so MAPE and sum/measured ({_f(res['ratio_median'], 2)}) show that "
            "bias, not a ranking error"
        )
        if res["n_missing"] and res["n_missing"] >= res["n"]:  # scores on a few networks
            typer.echo(
                f"warning: the table covers {res['n']} of the {res['n'] + res['n_missing']} "
                "measured networks, so these scores rest on few of them; 'hwnas lut build "
                f"--space {lut.space} --num-classes {lut.num_classes} --from-run {run} --out "
                f"{lut_path}{_build_flags(lut)}' adds the blocks it lacks",
                err=True,
            )

    app.add_typer(lut_app, name="lut")

    # ---- predictors on measured data ------------------------------------------------------
    predictors = _predictors_group(app)

    @predictors.command("fit")
    @_user_errors
    def predictors_fit(
        run: Path = typer.Option(..., "--run", help="Profile run directory."),
        target: str = typer.Option("latency", "--target", help="Stored objective to predict."),
        model: str = typer.Option("auto", "--model", help="Predictor (see 'predictors list')."),
        out: Path = typer.Option(..., "--out", help="P.joblib or P.pkl (+ P.*.json metadata)."),
        seed: int = typer.Option(0, "--seed", min=0),
        test_fraction: float = typer.Option(
            0.2, "--test-fraction", help="Share of the rows held out for the test scores."
        ),
        cv_folds: int = typer.Option(5, "--cv-folds", help="CV folds on the rest (0: none)."),
        flops_baseline: bool = typer.Option(
            True, "--flops-baseline/--no-flops-baseline", help="Score ranking by FLOPs alone."
        ),
        as_json: bool = _JSON,
    ) -> None:
        """Fit a predictor on a profile's measurements and save it with its metadata."""
        from hwnas.predict.fitted import check_writable_file, fit_on_profile, sidecar_path

        if out.suffix not in (".joblib", ".pkl", ".pickle"):
            raise HwnasError(f"--out must end in .joblib or .pkl, got '{out.name}'")
        check_writable_file(out)
        fitted = fit_on_profile(
            run,
            target=target,
            model=model,
            seed=seed,
            test_fraction=test_fraction,
            cv_folds=cv_folds,
            flops_baseline=flops_baseline,
        )
        fitted.save(out)
        meta = fitted.metadata
        if as_json:
            _echo_json({"out": str(out), "sidecar": str(sidecar_path(out)), **meta})
            return
        sc = meta["scores"]
        rows = []
        for part in ("cv", "test"):
            if part in sc:
                rows.append(
                    [
                        f"{meta['chosen']} ({part})",
                        _f(sc[part]["kendall_tau"]),
                        _f(sc[part]["spearman_rho"]),
                        _f(sc[part]["mape"], 2),
                    ]
                )
        if "flops_baseline" in sc:
            fb = sc["flops_baseline"]
            rows.append(["FLOPs only (test)", _f(fb["kendall_tau"]), _f(fb["spearman_rho"]), "-"])
        _table(
            f"{meta['target_key']} predictor, {meta['n_train']} training rows",
            ["model", "kendall_tau", "spearman_rho", "MAPE %"],
            rows,
        )
        typer.echo(f"saved {out} and {sidecar_path(out)}")

    @predictors.command("evaluate-run")
    @_user_errors
    def predictors_evaluate_run(
        run: Path = typer.Option(..., "--run", help="Profile run directory."),
        target: str = typer.Option("latency", "--target", help="Stored objective to predict."),
        models: str = typer.Option("ridge,svr,gp,cart", "--models", help="Comma-separated."),
        sizes: str = typer.Option("10,25,50,100,200", "--sizes", help="Training-set sizes."),
        trials: int = typer.Option(5, "--trials", min=1),
        test_size: int = typer.Option(0, "--test-size", min=0, help="Held-out rows (0: a third)."),
        seed: int = typer.Option(0, "--seed", min=0),
        out: Path = typer.Option(None, "--out", help="Directory for CSV and plots."),
        as_json: bool = _JSON,
    ) -> None:
        """Sample efficiency of predictors on measured data (with the FLOPs baseline)."""
        from hwnas.predict.evaluate import plot_sample_efficiency, write_csv
        from hwnas.predict.fitted import sample_efficiency_on_profile

        model_list = [m.strip() for m in models.split(",") if m.strip()]
        size_list = int_list(sizes, "--sizes")
        with progress_bar("fitting", enabled=not as_json) as update:
            rows, summary, base = sample_efficiency_on_profile(
                run,
                target,
                model_list,
                size_list,
                trials,
                test_size or None,
                seed,
                progress=lambda done, total, _row: update(done, total),
            )
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            write_csv(rows, out / "trials.csv")
            write_csv(summary, out / "summary.csv")
            (out / "baseline.json").write_text(json.dumps(base, indent=2) + "\n")
            plot_sample_efficiency(rows, out / "kendall_tau.png", metric="kendall_tau")
            plot_sample_efficiency(rows, out / "mape.png", metric="mape")
        if as_json:
            _echo_json({"summary": summary, "baseline": base})
            return
        table_rows = [
            [
                r["model"],
                str(r["size"]),
                _f(r["kendall_tau_median"]),
                _f(r["spearman_rho_median"]),
                _f(r["mape_median"], 2),
            ]
            for r in summary
        ]
        if "flops_kendall_tau" in base:
            table_rows.append(
                [
                    "FLOPs only",
                    "-",
                    _f(base["flops_kendall_tau"]),
                    _f(base["flops_spearman_rho"]),
                    "-",
                ]
            )
        _table(
            f"{base['target']} on {base['n']} measured subnets: median over {trials} trials, "
            f"test size {base['test_size']}",
            ["model", "size", "kendall_tau", "spearman_rho", "mape"],
            table_rows,
        )
