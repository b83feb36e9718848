"""Complexity-aware sampling of the sandwich rule's random subnets (ElasticViT)."""

from pathlib import Path

import numpy as np
import pytest

import hwnas.train.supernet as ts
from hwnas.errors import HwnasError
from hwnas.space import get_space
from hwnas.train.sampling import (
    ComplexityAwareSampler,
    ProgressiveShrinking,
    dimension_kind,
    tilted_sample,
)
from hwnas.train.supernet import TrainConfig, load_checkpoint, train_supernet


def test_tilted_sample_leans_towards_small_or_large_choices():
    sp = get_space("mbv3-cifar")
    rng = np.random.default_rng(0)
    top = sp.cardinalities - 1
    big = tilted_sample(sp, np.full(2000, 50.0), rng)
    small = tilted_sample(sp, np.full(2000, -50.0), rng)
    flat = tilted_sample(sp, np.zeros(20000), rng)
    assert (big == top).mean() > 0.99 and (small == 0).mean() > 0.99
    assert ((big >= 0) & (big <= top)).all() and ((flat >= 0) & (flat <= top)).all()
    # no tilt: uniform over each dimension's choices
    for d in (0, 5, len(top) - 1):
        freq = np.bincount(flat[:, d], minlength=top[d] + 1) / len(flat)
        np.testing.assert_allclose(freq, 1 / (top[d] + 1), atol=0.02)


@pytest.mark.parametrize(("space", "shape"), [("mbv3-cifar", (3, 10)), ("mbv3-ramnas", ())])
def test_every_bin_is_trained_alike_and_adjacent_steps_stay_close(space, shape):
    sp = get_space(space)
    sampler = ComplexityAwareSampler(sp, bins=5, shape=shape)
    rng = np.random.default_rng(1)
    bins, steps = [], 500
    for _ in range(steps):
        v = sampler.sample(2, rng)
        mf = sp.mflops_batch(v, *shape)
        b = sampler.bin
        assert ((mf >= sampler.edges[b]) & (mf <= sampler.edges[b + 1])).all()
        assert (sp.canonicalize(v) == v).all()
        bins.append(b)
    assert np.abs(np.diff(bins)).max() <= 1  # neighbouring sizes on consecutive steps
    counts = np.bincount(bins, minlength=5)
    assert counts.min() > 0.5 * steps / 5, counts  # every size alike, the ends included
    # uniform sampling hardly ever trains the largest fifth of the MFLOPs range
    uni = sp.mflops_batch(sp.sample(steps * 2, rng), *shape)
    assert (uni >= sampler.edges[-2]).mean() < 0.01
    assert counts[-1] > 0.1 * steps


def test_the_bin_walk_visits_the_end_bins_as_often_as_the_others():
    """Reflected at the ends, the walk visited the smallest and largest bins half as
    often as the rest (1294 and 1646 of 20,000 steps over 8 bins, not ~2500)."""
    sampler = ComplexityAwareSampler(get_space("mbv3-cifar"), bins=8, shape=(1, 10))
    rng = np.random.default_rng(0)
    counts = np.bincount([sampler.next_bin(rng) for _ in range(20000)], minlength=8)
    assert (np.abs(counts / 2500 - 1) < 0.15).all(), counts


def test_sampler_state_round_trip_and_errors():
    sp = get_space("mbv3-cifar")
    a = ComplexityAwareSampler(sp, bins=5, shape=(3, 10))
    rng = np.random.default_rng(3)
    for _ in range(7):
        a.sample(1, rng)
    b = ComplexityAwareSampler(sp, bins=5, shape=(3, 10))
    b.load_state(a.state())
    state = rng.bit_generator.state
    va = a.sample(2, rng)
    rng.bit_generator.state = state
    np.testing.assert_array_equal(b.sample(2, rng), va)
    with pytest.raises(HwnasError, match="closed-form MFLOPs; nb201 has none"):
        ComplexityAwareSampler(get_space("nb201"))
    with pytest.raises(HwnasError, match=">= 1 bin"):
        ComplexityAwareSampler(sp, bins=0)


def _cfg(tmp_path: Path, **kw) -> TrainConfig:
    base = dict(
        dataset="digits",
        out_dir=str(tmp_path / "run"),
        epochs=2,
        steps_per_epoch=2,
        limit=32,
        batch_size=8,
        num_random=2,
        bn_calib_batches=1,
        eval_every=0,
        num_threads=1,
        progress=False,
        sampling="complexity",
        sampling_bins=4,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_training_samples_by_complexity_and_resumes_the_walk(tmp_path, monkeypatch):
    """Each step's random subnets share an MFLOPs bin, consecutive steps' bins are
    neighbours, and a resumed run goes on with the walk where the checkpoint left it."""
    seen: list[list[dict]] = []
    step = ts.sandwich_step
    monkeypatch.setattr(
        ts,
        "sandwich_step",
        lambda m, x, y, configs, *a: seen.append(configs) or step(m, x, y, configs, *a),
    )
    full = train_supernet(_cfg(tmp_path / "a"))
    sp = get_space("mbv3-cifar")
    sampler = ComplexityAwareSampler(sp, 4, (1, 10))  # digits: 1 channel, 10 classes
    bins = []
    for configs in seen:
        mf = sp.mflops_batch(np.array([sp.encode(c) for c in configs[1:-1]]), 1, 10)
        b = np.searchsorted(sampler.edges, mf, side="right") - 1
        assert b.min() == b.max() or np.isclose(mf, sampler.edges[b]).any()
        bins.append(int(np.clip(b.max(), 0, 3)))
    assert len(bins) == 4 and np.abs(np.diff(bins)).max() <= 1

    seen.clear()
    train_supernet(_cfg(tmp_path / "b"), max_epochs=1)
    assert load_checkpoint(tmp_path / "b" / "run")["sampler"]["bin"] is not None
    resumed = train_supernet(_cfg(tmp_path / "b"))
    np.testing.assert_allclose(resumed.step_losses, full.step_losses[2:], rtol=1e-6)


def test_progressive_shrinking_frees_one_kind_of_dimension_per_phase():
    sp = get_space("mbv3-cifar")
    kinds = [dimension_kind(d.name) for d in sp.dims]
    assert kinds.count("resolution") == 1 and kinds.count("depth") == 7
    assert kinds.count("kernel") == 37 and kinds.count("width") == 34  # e_, w_, stem, last
    ps = ProgressiveShrinking(sp, total_steps=8)
    top = sp.decode(sp.largest())
    rng = np.random.default_rng(0)
    phases, varied = [], {0: set(), 1: set(), 2: set(), 3: set()}
    for _ in range(40):
        phase = ps.phase
        phases.append(phase)
        vecs = ps.sandwich(3, rng)
        assert len(vecs) == 5 and (vecs[0] == sp.largest()).all()
        for v in vecs[1:]:
            c = sp.decode(v)
            if c["resolution"] != top["resolution"]:
                varied[phase].add("resolution")
            for s, t in zip(c["stages"], top["stages"], strict=True):
                if s["depth"] != t["depth"]:
                    varied[phase].add("depth")
                d = s["depth"]
                if s["kernel"][:d] != t["kernel"][:d]:
                    varied[phase].add("kernel")
                if s["expand"][:d] != t["expand"][:d] or s["width"] != t["width"]:
                    varied[phase].add("width")
    assert phases[:8] == [0, 0, 1, 1, 2, 2, 3, 3] and set(phases[8:]) == {3}
    assert varied[0] == {"resolution"}
    assert varied[1] == {"resolution", "kernel"}
    assert varied[2] == {"resolution", "kernel", "depth"}
    assert varied[3] == {"resolution", "kernel", "depth", "width"}
    assert (ps.sandwich(0, rng)[-1] == sp.smallest()).all()  # the last phase: the smallest


def test_training_by_progressive_shrinking_records_phases_and_resumes(tmp_path):
    cfg = dict(sampling="progressive", epochs=4, steps_per_epoch=1, num_random=1)
    full = train_supernet(_cfg(tmp_path / "a", **cfg))
    assert [r["phase"] for r in full.history] == [0, 1, 2, 3]
    train_supernet(_cfg(tmp_path / "b", **cfg), max_epochs=2)
    assert load_checkpoint(tmp_path / "b" / "run")["sampler"] == {"step": 2, "phase": 1}
    resumed = train_supernet(_cfg(tmp_path / "b", **cfg))
    assert [r["phase"] for r in resumed.history] == [2, 3]
    np.testing.assert_allclose(resumed.step_losses, full.step_losses[2:], rtol=1e-6)
    # resumed with more epochs, the finished run goes on in its last phase
    longer = train_supernet(_cfg(tmp_path / "b", **(cfg | {"epochs": 6})))
    assert [r["phase"] for r in longer.history] == [3, 3]
    with pytest.raises(ValueError, match="num_random=0 trains none"):
        _cfg(tmp_path, num_random=0)  # complexity-aware sampling with nothing to pick


def test_progressive_phases_with_few_steps_and_per_epoch():
    """With fewer steps than phases the last phase is still reached (the first ones are
    skipped); an epoch's record can name every phase its steps went through."""
    sp = get_space("mbv3-cifar")
    assert [ProgressiveShrinking(sp, 3).phase_of(s) for s in range(3)] == [1, 2, 3]
    assert [ProgressiveShrinking(sp, 1).phase_of(0)] == [3]
    ps = ProgressiveShrinking(sp, 6)
    assert [ps.phase_of(s) for s in range(6)] == [0, 1, 1, 2, 3, 3]
    assert ps.phases_between(0, 2) == [0, 1] and ps.phases_between(3, 5) == [2, 3]
    resumed = ProgressiveShrinking(sp, 12)  # the 6-step run resumed with twice the steps
    resumed.load_state({"step": 6, "phase": 3})
    assert resumed.phase == 3 and resumed.phases_between(6, 11) == [3]
