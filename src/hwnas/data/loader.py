"""Mini-batches from in-memory tensors, with random crop (zero padding) and flip in torch."""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F


def augment_batch(
    x: torch.Tensor,
    pad: int = 4,
    flip: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random ``pad``-pixel crop (of the zero-padded batch) and random horizontal flip.

    Vectorised over the batch; ``x`` is (N, C, H, W).
    """
    n, c, h, w = x.shape
    if pad > 0:
        xp = F.pad(x, (pad, pad, pad, pad))
        oy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
        ox = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
        rows = (oy[:, None] + torch.arange(h)[None, :])[:, None, :, None]
        cols = (ox[:, None] + torch.arange(w)[None, :])[:, None, None, :]
        x = xp[
            torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols
        ]
    if flip:
        mask = torch.rand(n, generator=generator) < 0.5
        x = torch.where(mask[:, None, None, None], x.flip(3), x)
    return x


class BatchIterator:
    """Iterate (x, y) mini-batches; shuffles and augments with its own generator.

    ``shard=(rank, world)`` gives each distributed process a disjoint part of every
    epoch's permutation (the permutation itself is the same on all ranks).
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        augment: bool = False,
        pad: int = 4,
        flip: bool = True,
        drop_last: bool = False,
        generator: torch.Generator | None = None,
        max_batches: int | None = None,
        shard: tuple[int, int] = (0, 1),
        channels_last: bool = False,
    ) -> None:
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle, self.augment = shuffle, augment
        self.pad, self.flip = pad, flip
        self.drop_last = drop_last
        self.generator = generator
        self.max_batches = max_batches
        self.rank, self.world = shard
        self.channels_last = channels_last

    def _n_local(self) -> int:
        return len(self.x) // self.world

    def __len__(self) -> int:
        n = self._n_local()
        b = n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        return b if self.max_batches is None else min(b, self.max_batches)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.x)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        m = self._n_local()
        order = order[self.rank * m : (self.rank + 1) * m] if self.world > 1 else order
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            xb = self.x[idx]
            if self.augment:
                xb = augment_batch(xb, self.pad, self.flip, self.generator)
            if self.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            yield xb, self.y[idx]
