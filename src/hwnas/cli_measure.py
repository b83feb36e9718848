"""CLI commands for latency measurement and the device agent.

``register(app)`` adds to the main ``hwnas`` app:

* ``hwnas measure MODEL.onnx [MODEL2.onnx ...]`` — measure locally or on an agent;
* ``hwnas agent serve --token-file F`` — run the device agent;
* ``hwnas agent token F`` — create a token file (mode 0600).

Nothing here imports torch, so these commands work with the light agent install.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Any

import typer

from hwnas.errors import HwnasError, reworded
from hwnas.errors import user_errors as _user_errors


def int_list(text: str, flag: str) -> list[int]:
    """Comma-separated integers from an option (``--sizes 25,50``); anything else is a
    one-line ``HwnasError`` naming the flag."""
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise HwnasError(f"{flag} must be comma-separated integers, got '{text}'") from None


def check_timeout(timeout_s: float, flag: str = "--timeout-s") -> float:
    """A positive, finite time-out in seconds, else a one-line ``HwnasError``."""
    if not 0 < timeout_s < float("inf"):
        raise HwnasError(f"{flag} must be positive, got {timeout_s:g}")
    return timeout_s


def _fmt_ms(x: float) -> str:
    return f"{x:.4f}" if x < 1 else f"{x:.3f}" if x < 100 else f"{x:.1f}"


def print_measurements(measurements: list[Any], file: Any = None) -> None:
    """A rich table of measurements plus the settings and host they were taken with."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(file=file or sys.stdout)
    if not console.is_terminal:  # files and pipes: do not squeeze the table into 80 columns
        console = Console(file=file or sys.stdout, width=max(console.width, 140))
    if not measurements:
        return
    first = measurements[0]
    s, host = first.settings, first.host
    table = Table(title="Latency (ms)", title_justify="left")
    name_width = min(16, max(len(m.model) for m in measurements))
    table.add_column("model", overflow="fold", min_width=name_width)
    table.add_column("latency", justify="right", header_style="bold")
    table.add_column("p10", justify="right")
    table.add_column("median", justify="right")
    table.add_column("IQR", justify="right")
    table.add_column("CV", justify="right")
    table.add_column("robust CV", justify="right")
    table.add_column("n", justify="right")
    table.add_column("stable", justify="center")
    for m in measurements:
        st = m.stats
        table.add_row(
            escape(m.model),  # a file name is not markup
            _fmt_ms(st.latency_ms),
            _fmt_ms(st.p10_ms),
            _fmt_ms(st.median_ms),
            _fmt_ms(st.iqr_ms),
            f"{st.cv:.3f}",
            f"{st.robust_cv:.3f}",
            str(st.n),
            "[red]no[/red]" if st.unstable else "yes",
        )
    console.print(table)
    inputs = {
        m.model: "; ".join(f"{k} {v.get('shape')} {v.get('dtype')}" for k, v in m.inputs.items())
        for m in measurements
    }
    shapes = next(iter(inputs.values()))
    if len(set(inputs.values())) > 1:  # models of other input shapes: each its own
        shapes = "per model: " + ", ".join(f"{escape(k)}: {v}" for k, v in inputs.items())
    console.print(
        f"latency = median over {first.stats.rounds} rounds of the per-round minimum of "
        f"{s.repeats_per_round} runs (after {s.warmup} warm-up runs), models interleaved",
        soft_wrap=True,
    )
    console.print(
        f"{first.runtime} {first.runtime_version}, {first.provider}, batch {s.batch_size}, "
        f"input {shapes}, threads intra {first.threads.get('intra_op')}"
        f"{' (the runtime default)' if first.threads.get('intra_op_requested') == 0 else ''} / "
        f"inter {first.threads.get('inter_op')}, {s.precision}, {first.measured_by}",
        soft_wrap=True,
    )
    cores = host.get("usable_cores") or host.get("logical_cores")
    gpu = host.get("gpu")
    gpu_text = f", GPU {gpu['name']}" if isinstance(gpu, dict) and gpu.get("name") else ""
    board = f" ({host['board']})" if host.get("board") else ""
    console.print(
        f"host {escape(str(host.get('hostname')))}{board}: {host.get('cpu_model')}, "
        f"{cores} cores{gpu_text}",
        soft_wrap=True,
    )
    for m in measurements:
        if m.stats.unstable:
            console.print(
                f"[yellow]warning:[/yellow] {escape(m.model)}: {m.stats.unstable_reason}",
                soft_wrap=True,
            )


def _distinct(models: list[Path]) -> list[Path]:
    """The models, each file once: one given twice would be timed twice under one name."""
    import warnings
    from collections import Counter

    seen: dict[Path, Path] = {}
    for m in models:
        seen.setdefault(m.resolve(), m)
    if len(seen) < len(models):
        counts = Counter(m.resolve() for m in models)
        twice = ", ".join(f"{seen[k]} ({n} times)" for k, n in counts.items() if n > 1)
        warnings.warn(f"the same file given more than once: {twice}; measured once", stacklevel=2)
    return list(seen.values())


def _measure_on_agent(client: Any, models: list[Path], settings: Any) -> list[Any]:
    """Measure on the agent in as few requests as its limits allow (models and bytes per
    request, asked first); more than one request is said, as models of different requests
    are not interleaved with each other."""
    import warnings

    from hwnas.measure.measurer import _calls

    limits = client.info().get("limits") or {}
    max_models = limits.get("max_models")
    max_bytes = limits.get("max_bytes")
    blobs = [m.read_bytes() for m in models]
    groups = _calls(
        blobs,
        [m.name for m in models],
        int(max_models) if max_models else None,
        int(max_bytes) if max_bytes else None,
    )
    if len(groups) > 1:
        warnings.warn(
            f"the agent at {client.url} takes at most {max_models} models and "
            f"{(max_bytes or 0) / 2**20:.2f} MiB per request: the {len(models)} models are "
            f"measured in {len(groups)} requests, interleaved within each only",
            stacklevel=2,
        )
    found = []
    for group in groups:
        found += client.measure_many(
            [blobs[i] for i in group], settings, [models[i].name for i in group]
        )
    return found


def register(app: typer.Typer) -> None:
    """Add the ``measure`` command and the ``agent`` group to ``app``."""
    from hwnas.measure.agent import DEFAULT_HOST, DEFAULT_PORT

    agent_app = typer.Typer(
        help="Device agent: measure ONNX models on another machine over HTTP.",
        no_args_is_help=True,
    )

    def _ready_line(server: Any) -> str:
        """Where clients reach the agent: on all interfaces, its URL is no address."""
        host, port = server.server_address[:2]
        if host in ("0.0.0.0", "::"):
            import socket

            return (
                f"hwnas agent listening on all interfaces, port {port}: clients use "
                f"http://{socket.gethostname()}:{port} or this machine's address (Ctrl-C to stop)"
            )
        return f"hwnas agent listening on {server.url} (Ctrl-C to stop)"

    @agent_app.command("serve")
    @_user_errors
    def agent_serve(
        token_file: Path = typer.Option(
            ..., "--token-file", help="File holding the shared token (mode 0600)."
        ),
        host: str = typer.Option(
            DEFAULT_HOST, "--host", help="Address to listen on (loopback by default)."
        ),
        port: int = typer.Option(DEFAULT_PORT, "--port", help="TCP port (0: any free port)."),
        max_mb: float = typer.Option(64.0, "--max-mb", help="Largest accepted upload, MiB."),
        timeout_s: float = typer.Option(
            300.0, "--timeout-s", help="Time-out of one measurement request, seconds."
        ),
        memory_mb: int = typer.Option(
            2048, "--memory-mb", help="Address-space limit of the measuring process (0: none)."
        ),
        queue_size: int = typer.Option(
            4, "--queue-size", help="Requests that may wait while one is measured (then 503)."
        ),
    ) -> None:
        """Serve POST /measure (ONNX body), GET /info and GET /health until interrupted."""
        from hwnas.measure.agent import read_token_file, serve

        if not 0 <= port <= 65535:
            raise HwnasError(f"--port must be 0..65535 (0: any free port), got {port}")
        if not max_mb > 0:
            raise HwnasError("--max-mb must be positive")
        check_timeout(timeout_s)
        token = read_token_file(token_file)
        agent_log = logging.getLogger("hwnas.agent")
        if not agent_log.handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            agent_log.addHandler(handler)
            agent_log.setLevel(logging.INFO)
        serve(
            host,
            port,
            token,
            max_bytes=int(max_mb * 2**20),
            timeout_s=timeout_s,
            memory_mb=memory_mb,
            queue_size=queue_size,
            on_ready=lambda server: typer.echo(_ready_line(server), err=True),
        )

    @agent_app.command("token")
    @_user_errors
    def agent_token(
        token_file: Path = typer.Argument(..., help="Where to write the new token."),
        force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
    ) -> None:
        """Create a random token file (mode 0600) for `agent serve` and its clients."""
        from hwnas.measure.agent import write_token_file

        try:
            write_token_file(token_file, overwrite=force)
        except HwnasError as exc:  # the library names its own argument too: say the flag
            text = str(exc).replace("--force, overwrite=True", "--force")
            raise reworded(exc, text) from None
        typer.echo(f"wrote a new token to {token_file}; copy it to the clients (keep it 0600)")

    app.add_typer(agent_app, name="agent")

    @app.command("measure")
    @_user_errors
    def measure_cmd(
        models: list[Path] = typer.Argument(
            ..., help="ONNX file(s); several are measured interleaved in rounds."
        ),
        runtime: str = typer.Option("onnxruntime", "--runtime", help="Runtime: onnxruntime."),
        batch_size: int = typer.Option(1, "--batch-size", help="Batch size."),
        threads: int = typer.Option(
            1, "--threads", help="Intra-op threads (0: the runtime's default; its count is shown)."
        ),
        inter_threads: int = typer.Option(1, "--inter-threads", help="Inter-op threads."),
        input_shape: str = typer.Option(
            "",
            "--input-shape",
            help="One sample's shape, e.g. 3,224,224 or 128 (default: model's); it fills the "
            "dynamic sizes of every input of its rank (a BERT's ids and mask alike).",
        ),
        provider: str = typer.Option("auto", "--provider", help="auto, cpu, cuda, tensorrt."),
        warmup: int = typer.Option(10, "--warmup", help="Warm-up runs per model."),
        rounds: int = typer.Option(20, "--rounds", help="Rounds (models interleaved)."),
        repeats: int = typer.Option(5, "--repeats", help="Timed runs per model per round."),
        seed: int = typer.Option(0, "--seed", min=0, help="Seed of the round order and inputs."),
        agent: str = typer.Option(
            "", "--agent", help="Measure on a device agent at this URL instead of here."
        ),
        token_file: Path = typer.Option(
            None, "--token-file", help="Token file for --agent (mode 0600)."
        ),
        isolate: bool = typer.Option(
            False, "--isolate", help="Measure locally in a child process (time-out, no crash)."
        ),
        timeout_s: float | None = typer.Option(
            None,
            "--timeout-s",
            help="Time-out of the --isolate measurement or of the --agent request, seconds "
            "(default 3600); only with --isolate or --agent: a measurement in this process "
            "cannot be stopped.",
        ),
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    ) -> None:
        """Measure the latency of ONNX model(s) with the interleaved protocol."""
        from hwnas.measure.latency import MeasureSettings
        from hwnas.measure.measurer import LocalMeasurer

        if runtime.lower() not in ("onnxruntime", "ort", "onnx"):
            raise HwnasError(
                f"the measure command runs ONNX files with onnxruntime, not {runtime!r}; "
                "measure PyTorch modules from Python with hwnas.measure.measure_torch"
            )
        if isolate and agent:
            raise HwnasError(
                "--isolate measures here in a child process; an --agent isolates every "
                "measurement itself: drop --isolate"
            )
        if timeout_s is not None and not (isolate or agent):
            raise HwnasError(
                "--timeout-s applies with --isolate or --agent only (a measurement in this "
                "process cannot be stopped); add --isolate"
            )
        timeout = check_timeout(timeout_s if timeout_s is not None else 3600.0)
        settings = MeasureSettings(
            runtime="onnxruntime",
            batch_size=batch_size,
            input_shape=input_shape or None,
            intra_op_threads=threads,
            inter_op_threads=inter_threads,
            provider=provider,
            warmup=warmup,
            rounds=rounds,
            repeats_per_round=repeats,
            seed=seed,
        )
        for m in models:
            if m.is_dir():
                raise HwnasError(f"{m} is a directory, not an ONNX model file")
            if not m.is_file():
                raise HwnasError(f"ONNX model file not found: {m}")
        models = _distinct(models)
        if agent:
            from hwnas.measure.agent import AgentClient, read_token_file

            if token_file is None:
                raise HwnasError("--agent needs --token-file")
            client = AgentClient(agent, read_token_file(token_file), timeout_s=timeout)
            found = _measure_on_agent(client, models, settings)
        else:
            if token_file is not None:
                raise HwnasError("--token-file is only used with --agent")
            measurer = LocalMeasurer(settings, isolate=isolate, timeout_s=timeout)
            found = measurer.measure(list(models), settings)
        names = [m.model for m in found]
        if len(set(names)) < len(names):  # one name in two folders: the paths tell them apart
            found = [
                dataclasses.replace(m, model=str(path))
                for m, path in zip(found, models, strict=True)
            ]
        if as_json:
            typer.echo(json.dumps([m.to_dict() for m in found], indent=2))
        else:
            print_measurements(found)
