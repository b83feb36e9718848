"""Derived (discrete) cells: the DARTS ``Genotype`` and the NB201 arch string.

A DARTS genotype lists, per cell type, two ``(op, input)`` pairs per intermediate node
(inputs 0 and 1 are the two previous cells' outputs, 2.. the earlier nodes) and the nodes
concatenated into the output, exactly as in the DARTS code, so published genotypes
(e.g. DARTS-V2) can be pasted in.
"""

from __future__ import annotations

import json
from collections import namedtuple
from typing import Any

from hwnas.errors import HwnasError

Genotype = namedtuple("Genotype", "normal normal_concat reduce reduce_concat")

DARTS_V2 = Genotype(
    normal=[
        ("sep_conv_3x3", 0),
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 0),
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 1),
        ("skip_connect", 0),
        ("skip_connect", 0),
        ("dil_conv_3x3", 2),
    ],
    normal_concat=[2, 3, 4, 5],
    reduce=[
        ("max_pool_3x3", 0),
        ("max_pool_3x3", 1),
        ("skip_connect", 2),
        ("max_pool_3x3", 1),
        ("max_pool_3x3", 0),
        ("skip_connect", 2),
        ("skip_connect", 2),
        ("max_pool_3x3", 1),
    ],
    reduce_concat=[2, 3, 4, 5],
)


def genotype_to_dict(g: Genotype) -> dict[str, Any]:
    """JSON-ready form: ``{"normal": [[op, input], ...], "normal_concat": [...], ...}``."""
    return {
        "normal": [[op, int(i)] for op, i in g.normal],
        "normal_concat": [int(i) for i in g.normal_concat],
        "reduce": [[op, int(i)] for op, i in g.reduce],
        "reduce_concat": [int(i) for i in g.reduce_concat],
    }


def genotype_from_dict(d: dict[str, Any] | str) -> Genotype:
    """Inverse of :func:`genotype_to_dict`; also accepts the JSON text."""
    if isinstance(d, str):
        try:
            d = json.loads(d)
        except json.JSONDecodeError as exc:
            raise HwnasError(f"genotype is not valid JSON: {exc}") from None
    if not isinstance(d, dict):
        raise HwnasError("genotype must be a JSON object with normal/reduce lists")
    try:
        return Genotype(
            normal=[(str(op), int(i)) for op, i in d["normal"]],
            normal_concat=[int(i) for i in d["normal_concat"]],
            reduce=[(str(op), int(i)) for op, i in d["reduce"]],
            reduce_concat=[int(i) for i in d["reduce_concat"]],
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise HwnasError(f"malformed genotype {d!r}: {exc}") from None
