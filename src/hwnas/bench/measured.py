"""Latency of a surrogate benchmark's subnets measured for real: each subnet built in
PyTorch with random weights (weights do not change latency), exported to ONNX and run
with ONNX Runtime on this machine or on a device agent (``hwnas agent serve``). Shared by
the OFA benchmarks' ``latency=true`` option.

Drift anchor (``anchor=true``, the default): a fixed small subnet runs in every
measurement call, interleaved with the batch, and each subnet's latency is the median
over rounds of its ratio to the anchor times the anchor's reference latency (measured
alone when the search starts, and kept by a resumed search), as ``hwnas profile`` does:
a machine slower or faster for a while (another job, heat, a governor) then shifts
no batch against the others."""

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
    anchor: object = True,
    agent_timeout_s: object = None,
) -> None:
    """One line for options that do not go together: agent/token_file/threads/rounds/
    anchor say how latency is measured and need ``latency=true``; an agent needs its
    token file."""
    if (agent is not None or token_file is not None) and latency is not True:
        raise HwnasError(
            f"{name}: agent and token_file say where latency is measured; they need latency=true"
        )
    if (agent is None) != (token_file is None):
        raise HwnasError(
            f"{name}: a device agent needs both agent=URL and token_file=PATH "
            "(the file 'hwnas agent token' wrote)"
        )
    if agent_timeout_s is not None:
        ok = isinstance(agent_timeout_s, int | float) and not isinstance(agent_timeout_s, bool)
        if not ok or not 0 < agent_timeout_s < float("inf"):  # type: ignore[operator]
            raise HwnasError(
                f"{name}: agent_timeout_s must be positive seconds, got {agent_timeout_s!r}"
            )
    if agent is None and agent_timeout_s is not None:
        raise HwnasError(
            f"{name}: agent_timeout_s is how long to wait on a device agent; it needs agent=URL"
        )
    for key, flag in (("latency", latency), ("anchor", anchor)):
        if not isinstance(flag, bool):
            raise HwnasError(f"{name}: {key} must be true or false, got {flag!r}")
    for key, value in (("threads", threads), ("rounds", rounds)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise HwnasError(f"{name}: {key} must be an integer >= 1, got {value!r}")
    if not latency and (threads, rounds, anchor) != (1, 5, True):
        raise HwnasError(
            f"{name}: threads, rounds and anchor set how latency is measured; they need "
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
        anchor: bool = True,
        agent_timeout_s: float | None = None,
    ) -> None:
        from hwnas.measure.latency import MeasureSettings

        self.name = name
        self.space, self._build = space, build
        self._largest_params = largest_params
        # the drift anchor: the smallest subnet at the middle resolution (small, so that
        # it adds little to each upload to an agent)
        small = space.smallest().copy()
        r = [d.name for d in space.dims].index("r")
        small[r] = space.dims[r].size // 2
        self.anchor: np.ndarray | None = space.canonicalize(small[None])[0] if anchor else None
        self.reference_ms: float | None = None  # the anchor's latency, once measured
        self._anchor_onnx: bytes | None = None  # exported once: the same in every call
        # a short protocol (a subnet takes 5-300 ms a run on one core): the batch's
        # subnets interleaved round by round, so drift hits them alike
        self.settings = MeasureSettings(
            warmup=2, rounds=rounds, repeats_per_round=2, intra_op_threads=threads, provider="cpu"
        )
        self.agent: dict[str, object] | None = None
        self._agent_at = (agent, token_file, threads)
        # how long one request may take on the agent, queue included: one that stops
        # answering fails the search after this, not after an hour (default: what the
        # agent says a request may take, its queue wait and measurement time-outs)
        self._agent_timeout_s = agent_timeout_s
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
            self._reference()
            return
        from hwnas.measure.agent import (
            INFO_TIMEOUT_S,
            AgentClient,
            agent_request_time_s,
            read_token_file,
        )

        client = AgentClient(
            str(agent), read_token_file(token_file), self._agent_timeout_s or INFO_TIMEOUT_S
        )
        info = client.info()
        limits = info.get("limits") or {}
        if self._agent_timeout_s is None:
            client.timeout_s = agent_request_time_s(limits)
        cores = limits.get("max_threads")
        if cores and threads > int(cores):
            raise HwnasError(
                f"{self.name}: threads {threads}: the agent at {client.url} has {cores} core(s)"
            )
        self._limits = {
            k: int(limits[k]) if limits.get(k) else None for k in ("max_models", "max_bytes")
        }
        if self.anchor is not None and (self._limits["max_models"] or 2) < 2:
            raise HwnasError(
                f"{self.name}: the agent at {client.url} takes one model a request: no room "
                "for the drift anchor beside it; pass anchor=false"
            )

        # an ONNX file is its float32 weights and a little more: refuse an agent that
        # cannot take the largest subnet (beside the anchor) before a search spends
        # evaluations on failures
        def mib(params: float) -> float:
            return (4.0 * params * 1.02 + 2**20) / 2**20

        need = mib(self._largest_params())
        beside = 0.0
        if self.anchor is not None:
            beside = mib(sum(p.numel() for p in self._anchor_module().parameters()))
        limit = self._limits["max_bytes"]
        if limit is not None and (need + beside) * 2**20 > limit:
            with_anchor = f" beside the drift anchor's {beside:.0f} MiB" if beside else ""
            raise HwnasError(
                f"{self.name}: the largest subnet's ONNX model is about {need:.0f} MiB"
                f"{with_anchor}, more than the {limit / 2**20:.0f} MiB a request to the agent "
                f"at {client.url} may upload: start it with --max-mb "
                f"{math.ceil(need + beside)}"
            )
        self._measurer = RemoteMeasurer(client, self.settings)
        self.agent = {"url": client.url, "host": info.get("host") or {}}
        self._reference()

    def _reference(self) -> None:
        """The anchor's reference latency: measured alone, once (unless restored)."""
        from hwnas.measure.measurer import measure_modules

        if self.anchor is None or self.reference_ms is not None:
            return
        assert self._measurer is not None
        (m,) = measure_modules(
            self._measurer, [self._anchor_model()], self._shape(self.anchor), labels=["anchor"]
        )
        self.reference_ms = float(m.stats.median_ms)

    def _anchor_module(self) -> Any:
        assert self.anchor is not None
        return self._build(self.anchor).eval()

    def _anchor_model(self) -> bytes:
        """The anchor's ONNX model, exported on first use (not once per batch)."""
        if self._anchor_onnx is None:
            from hwnas.measure.export import onnx_bytes

            assert self.anchor is not None
            shape = self._shape(self.anchor)
            self._anchor_onnx = onnx_bytes(self._anchor_module(), shape, self.settings.batch_size)
        return self._anchor_onnx

    def _shape(self, vector: np.ndarray) -> tuple[int, int, int]:
        r = int(self.space.decode(vector)["r"])
        return (3, r, r)

    def restore(self, described: dict[str, Any] | None) -> None:
        """Take the anchor's reference latency from an earlier :meth:`describe` (a resumed
        search's first segment), so its latencies stay on one scale; ignored when that
        described another anchor or none."""
        anchor = (described or {}).get("anchor") or {}
        if self.anchor is None or anchor.get("arch") != self.space.keys(self.anchor[None])[0]:
            return
        ref = anchor.get("reference_ms")
        if isinstance(ref, int | float) and math.isfinite(ref) and ref > 0:
            self.reference_ms = float(ref)

    def __call__(self, vectors: np.ndarray) -> np.ndarray:
        """Latency (ms) of each subnet: the batch's subnets measured in one interleaved
        call whatever their resolutions (split only into the requests an agent takes),
        with the anchor in each call (drift-corrected), or their plain medians."""
        from hwnas.measure.measurer import measure_beside_anchor, measure_modules
        from hwnas.measure.profile import AnchorCorrection

        self.prepare()
        assert self._measurer is not None
        x = np.atleast_2d(vectors)
        shapes = [self._shape(v) for v in x]
        modules = [self._build(v).eval() for v in x]
        labels = [f"subnet {k}" for k in self.space.keys(x)]
        if self.anchor is None:
            found = measure_modules(self._measurer, modules, shapes, labels=labels, **self._limits)
            return np.asarray([m.stats.median_ms for m in found], dtype=np.float64)
        assert self.reference_ms is not None
        anchor = (self._anchor_model(), self._shape(self.anchor))
        pairs = measure_beside_anchor(
            self._measurer, anchor, modules, shapes, labels=labels, **self._limits
        )
        return np.asarray(
            [
                AnchorCorrection(self.reference_ms, a.stats.median_ms).apply(m, a)["latency_ms"]
                for m, a in pairs
            ],
            dtype=np.float64,
        )

    def describe(self) -> dict[str, object]:
        """Where and how latency is measured, for a search's summary."""
        from hwnas.measure.host import host_identity

        agent = self._agent_at[0]
        if agent:
            where: dict[str, object] = {"agent": self.agent or {"url": agent}}
        else:
            where = {"on": "this machine", "host": host_identity()}
        anchor = None
        if self.anchor is not None:
            anchor = {
                "arch": self.space.keys(self.anchor[None])[0],
                "reference_ms": self.reference_ms,  # None until measured or restored
            }
        return {"runtime": "onnxruntime", **where, **self.settings.to_dict(), "anchor": anchor}


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
