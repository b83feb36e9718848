"""Latency of a surrogate benchmark's subnets measured for real: each subnet built in
PyTorch with random weights (weights do not change latency), exported to ONNX and run
with ONNX Runtime on this machine or on a device agent (``hwnas agent serve``). Shared by
the OFA benchmarks' ``latency=true`` option."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from hwnas.errors import HwnasError

if TYPE_CHECKING:  # pragma: no cover
    from hwnas.measure.measurer import LocalMeasurer, RemoteMeasurer
    from hwnas.space.base import SearchSpace


def check_latency_options(
    name: str,
    latency: object,
    threads: object,
    rounds: object,
    agent: object,
    token_file: object,
    default_cost: str,
) -> None:
    """One line for options that do not go together: agent/token_file/threads/rounds say
    how latency is measured and need ``latency=true``; an agent needs its token file."""
    if (agent is not None or token_file is not None) and latency is not True:
        raise HwnasError(
            f"{name}: agent and token_file say where latency is measured; they need latency=true"
        )
    if (agent is None) != (token_file is None):
        raise HwnasError(
            f"{name}: a device agent needs both agent=URL and token_file=PATH "
            "(the file 'hwnas agent token' wrote)"
        )
    if not isinstance(latency, bool):
        raise HwnasError(f"{name}: latency must be true or false, got {latency!r}")
    for key, value in (("threads", threads), ("rounds", rounds)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise HwnasError(f"{name}: {key} must be an integer >= 1, got {value!r}")
    if not latency and (threads, rounds) != (1, 5):
        raise HwnasError(
            f"{name}: threads and rounds set how latency is measured; they need "
            f"latency=true (without it the cost is {default_cost})"
        )


class MeasuredLatency:
    """Median batch-1 latency (ms) of subnets, measured on this machine or an agent.

    ``build(vector)`` gives the subnet of ``space`` (whose configs hold its input side
    ``r``) as a ``torch.nn.Module``; ``largest_params`` the parameter count of the
    largest subnet (an agent whose upload limit cannot take its ONNX file is refused up
    front).
    """

    def __init__(
        self,
        name: str,
        space: SearchSpace,
        build: Callable[[np.ndarray], Any],
        largest_params: Callable[[], float],
        threads: int = 1,
        rounds: int = 5,
        agent: str | None = None,
        token_file: str | None = None,
    ) -> None:
        from hwnas.measure.latency import MeasureSettings

        self.name = name
        self.space, self._build = space, build
        self._largest_params = largest_params
        # a short protocol (a subnet takes 5-300 ms a run on one core): the batch's
        # subnets interleaved round by round, so drift hits them alike
        self.settings = MeasureSettings(
            warmup=2, rounds=rounds, repeats_per_round=2, intra_op_threads=threads, provider="cpu"
        )
        self.agent: dict[str, object] | None = None
        self._agent_at = (agent, token_file, threads)
        self._measurer: LocalMeasurer | RemoteMeasurer | None = None
        self._limits: dict[str, int | None] = {"max_models": None, "max_bytes": None}

    def prepare(self) -> None:
        """The measurer, once: this machine, or the agent, asked for its limits and host
        (a wrong URL or token, more threads than it has cores, or an upload limit below
        the largest subnet fails here, before a search does any work)."""
        from hwnas.measure.measurer import LocalMeasurer, RemoteMeasurer

        if self._measurer is not None:
            return
        agent, token_file, threads = self._agent_at
        if agent is None or token_file is None:
            cpus = os.cpu_count() or 1
            if threads > cpus:  # oversubscribed: every latency inflated, nothing said
                raise HwnasError(f"{self.name}: threads {threads}: this machine has {cpus} CPU(s)")
            self._measurer = LocalMeasurer(self.settings)
            return
        from hwnas.measure.agent import AgentClient, read_token_file

        client = AgentClient(str(agent), read_token_file(token_file))
        info = client.info()
        limits = info.get("limits") or {}
        cores = limits.get("max_threads")
        if cores and threads > int(cores):
            raise HwnasError(
                f"{self.name}: threads {threads}: the agent at {client.url} has {cores} core(s)"
            )
        self._limits = {
            k: int(limits[k]) if limits.get(k) else None for k in ("max_models", "max_bytes")
        }
        # an ONNX file is its float32 weights and a little more: refuse an agent that
        # cannot take the largest subnet before a search spends evaluations on failures
        need = 4.0 * self._largest_params() * 1.02 + 2**20
        limit = self._limits["max_bytes"]
        if limit is not None and need > limit:
            raise HwnasError(
                f"{self.name}: the largest subnet's ONNX model is about {need / 2**20:.0f} "
                f"MiB, more than the {limit / 2**20:.0f} MiB a request to the agent at "
                f"{client.url} may upload: start it with --max-mb {math.ceil(need / 2**20)}"
            )
        self._measurer = RemoteMeasurer(client, self.settings)
        self.agent = {"url": client.url, "host": info.get("host") or {}}

    def __call__(self, vectors: np.ndarray) -> np.ndarray:
        """Median latency (ms) of each subnet: the batch's subnets measured in one
        interleaved call, whatever their resolutions, so drift hits them alike (split
        only into the requests an agent takes)."""
        from hwnas.measure.measurer import measure_modules

        self.prepare()
        assert self._measurer is not None
        x = np.atleast_2d(vectors)
        shapes = [(3, r, r) for r in (int(self.space.decode(v)["r"]) for v in x)]
        modules = [self._build(v).eval() for v in x]
        labels = [f"subnet {k}" for k in self.space.keys(x)]
        found = measure_modules(self._measurer, modules, shapes, labels=labels, **self._limits)
        return np.asarray([m.stats.median_ms for m in found], dtype=np.float64)

    def describe(self) -> dict[str, object]:
        """Where and how latency is measured, for a search's summary."""
        from hwnas.measure.host import host_identity

        agent = self._agent_at[0]
        if agent:
            where: dict[str, object] = {"agent": self.agent or {"url": agent}}
        else:
            where = {"on": "this machine", "host": host_identity()}
        return {"runtime": "onnxruntime", **where, **self.settings.to_dict()}


def measured_on(details: dict[str, Any]) -> dict[str, Any] | None:
    """The identity of the machine a benchmark's ``describe()`` says latency was measured
    on (this machine's, or the agent's as it described itself); None if not measured or
    not known (an agent not asked)."""
    from hwnas.measure.host import host_identity

    latency = details.get("latency")
    if not isinstance(latency, dict):
        return None
    host = latency.get("host") or (latency.get("agent") or {}).get("host")
    return host_identity(host) if isinstance(host, dict) and host else None
