import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwnas.errors import HwnasError
from hwnas.registry import SPACES
from hwnas.space import get_space
from hwnas.space.nb201 import computed_edges, live_edges

CORE_SPACES = ["nb201", "fbnet", "ofa-mbv3", "ofa-resnet50"]


def vectors_of(space):
    return st.tuples(*(st.integers(0, d.size - 1) for d in space.dims)).map(
        lambda t: np.array(t, dtype=np.int64)
    )


@pytest.mark.parametrize("name", CORE_SPACES)
def test_registered(name):
    assert name in SPACES.names()
    sp = get_space(name)
    assert sp.n_dims == len(sp.dims)
    xl, xu = sp.bounds
    assert (xl == 0).all() and (xu == sp.cardinalities - 1).all()


@pytest.mark.parametrize("name", CORE_SPACES)
def test_encode_decode_round_trip(name):
    sp = get_space(name)

    @settings(max_examples=200, deadline=None)
    @given(vectors_of(sp))
    def check(v):
        canon = sp.canonicalize(v[None, :])[0]
        config = sp.decode(v)
        assert np.array_equal(sp.encode(config), canon)
        assert sp.decode(canon) == config
        assert np.array_equal(sp.from_key(sp.keys(v)[0]), canon)

    check()


def test_space_sizes_and_dimensions():
    assert get_space("nb201").size() == 5**6
    assert get_space("fbnet").size() == 9**22
    ofa = get_space("ofa-mbv3")
    assert ofa.n_dims == 20 + 20 + 5 + 1
    assert [d.size for d in ofa.dims[-6:]] == [3, 3, 3, 3, 3, 5]


def test_nb201_arch_string_edge_order():
    sp = get_space("nb201")
    s = "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"
    v = sp.encode(s)
    # edges 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2 ; ops none, skip, conv1x1, conv3x3, avgpool
    assert v.tolist() == [4, 2, 1, 2, 1, 1]
    assert sp.decode(v) == s


@pytest.mark.parametrize(
    "bad",
    [
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|",
        "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|",
        "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|",
        42,
    ],
)
def test_nb201_malformed_arch(bad):
    with pytest.raises(HwnasError):
        get_space("nb201").encode(bad)


@pytest.mark.parametrize(
    "vec", [[0, 0, 0], [0, 0, 0, 0, 0, 5], [0, 0, 0, 0, 0, -1], [0.5, 0, 0, 0, 0, 0], ["a"] * 6]
)
def test_validate_rejects(vec):
    with pytest.raises(HwnasError):
        get_space("nb201").validate(vec)


def test_ofa_canonicalize_ignores_skipped_blocks():
    sp = get_space("ofa-mbv3")
    v = sp.largest().copy()
    v[40:45] = 0  # all stages depth 2: blocks 2, 3 of each stage skipped
    canon = sp.canonicalize(v[None])[0]
    mask = sp.active_mask(canon[None])[0]
    assert mask.sum() == 10
    assert (canon[:20][~mask] == 0).all() and (canon[20:40][~mask] == 0).all()
    w = canon.copy()
    w[2] = 2  # change a skipped block: same architecture
    assert sp.keys(w) == sp.keys(canon)
    cfg = sp.decode(canon)
    assert cfg["d"] == [2] * 5 and cfg["r"] == 224
    for bad, message in (
        ({**cfg, "ks": 3}, "'ks', 'e' and 'd' must be lists"),
        ({**cfg, "e": [3] * 19}, "need 20 'ks', 20 'e' and 5 'd' values, got 20, 19 and 5"),
        ({**cfg, "r": "160"}, r"r='160' not in \(160, 176, 192, 208, 224\)"),
        ({**cfg, "ks": ["3"] * 20}, "ks='3' not in"),
        ({**cfg, "d": [True] * 5}, "d=True not in"),
        ({**cfg, "w": 1}, r"config has unknown w \(keys: ks, e, d, r\)"),
        ({"ks": cfg["ks"]}, "config lacks e, d, r"),
        ([1, 2], "a config is an object with keys ks, e, d, r, got list"),
    ):
        with pytest.raises(HwnasError, match=message):
            sp.encode(bad)


def test_ofa_features_follow_published_encoding():
    sp = get_space("ofa-mbv3")
    f = sp.features(sp.largest()[None])[0]
    assert f.shape == (128,)
    assert f[3 * 0 + 2] == 1 and f[60 + 3 * 0 + 2] == 1  # ks 7, e 6 in block 0
    assert f[120 + (224 - 112) // 16] == 1
    assert f.sum() == 20 + 20 + 1


def test_ofa_resnet50_layout_and_canonical_form():
    sp = get_space("ofa-resnet50")
    assert sp.n_dims == 1 + 4 + 18 + 6 + 1
    assert sp.size() == 2 * 3**4 * 3**18 * 3**6 * 8
    v = sp.largest().copy()
    v[1:5] = 0  # every stage at its base depth 2, 2, 4, 2: 10 of 18 blocks run
    canon = sp.canonicalize(v[None])[0]
    mask = sp.active_mask(canon[None])[0]
    assert mask.tolist() == [1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0, 1, 1, 0, 0]
    assert (canon[5:23][~mask] == 0).all()
    w = canon.copy()
    w[5 + 2] = 2  # a skipped block's expand ratio: the same network
    assert sp.keys(w) == sp.keys(canon)
    cfg = sp.decode(canon)
    assert cfg["d"] == [2, 0, 0, 0, 0] and cfg["w"] == [2] * 6 and cfg["r"] == 256
    assert cfg["e"][:2] == [0.35, 0.35] and cfg["e"][2] == 0.2  # skipped: first choice
    for bad, message in (
        ({**cfg, "d": [1, 0, 0, 0, 0]}, r"d\[0\]=1 not in \(0, 2\)"),
        ({**cfg, "w": [0.65] * 6}, r"w \(an index\)=0.65"),
        ({**cfg, "e": [0.35] * 17}, "need 5 'd', 18 'e' and 6 'w' values, got 5, 17 and 6"),
        ({**cfg, "d": [True, 0, 0, 0, 0]}, "d"),
        ({"d": cfg["d"]}, "config lacks e, w, r"),
        ({**cfg, "x": 1}, "config has unknown x"),
        ("|nor_conv_3x3~0|", "a config is an object with keys d, e, w, r, got str"),
        ({**cfg, "r": 208}, "r=208"),
    ):
        with pytest.raises(HwnasError, match=message):
            sp.encode(bad)


def test_ofa_resnet50_features_follow_ofas_encoder():
    """OFA's ResNetArchEncoder (tutorial resnet50 predictor): resolution one-hot over
    128, 144, 160, 176, 192, 224, 240, 256; input-stem-kept one-hot; six width-index
    one-hots; expand one-hots of the running blocks, 3 per slot of 4, 4, 6, 4."""
    sp = get_space("ofa-resnet50")
    cfg = {
        "d": [0, 1, 0, 2, 0],
        "e": [0.25] * 18,
        "w": [2, 0, 1, 1, 2, 0],
        "r": 224,
    }
    f = sp.features(sp.encode(cfg)[None])[0]
    assert f.shape == (82,)
    expect = {5, 8}  # r=224 is the 6th size; stem residual block skipped (d[0]=0)
    expect |= {10 + 3 * i + w for i, w in enumerate(cfg["w"])}
    running = [0, 1, 2, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15]  # slots 0-3, 4-7, 8-13, 14-17
    expect |= {28 + 3 * j + 1 for j in running}  # e=0.25 is the middle choice
    assert set(np.nonzero(f)[0].tolist()) == expect


def test_ofa_resnet50_cost_formula_equals_the_built_network():
    """MACs (torch's FLOP counter / 2) and parameters of the PyTorch network the space
    builds equal the closed form, across depths, widths, ratios and odd resolutions
    (144 and 176 are not multiples of 32: ceil-mode pooling)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from hwnas.space.ofa_resnet50 import build_module

    sp = get_space("ofa-resnet50")
    rng = np.random.default_rng(3)
    vecs = np.concatenate([sp.smallest()[None], sp.largest()[None], sp.sample(4, rng)])
    vecs[2:, -1] = [1, 3, 0, 5]  # r = 144, 176, 128, 224
    vecs = sp.canonicalize(vecs)
    macs, params = sp.macs_batch(vecs), sp.params_batch(vecs)
    for k, (v, m, p) in enumerate(zip(vecs, macs, params, strict=True)):
        net = build_module(v if k % 2 else sp.decode(v)).eval()  # a vector or a config
        r = sp.decode(v)["r"]
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            out = net(torch.zeros(1, 3, r, r))
        assert out.shape == (1, 1000)
        assert fc.get_total_flops() == 2 * m
        assert sum(t.numel() for t in net.parameters()) == p
    assert (sp.mflops_batch(vecs) == 2 * macs / 1e6).all()
    lo, hi = sp.size_range()["params"]
    assert lo == params[0] and hi == params[1]
    assert (params >= lo).all() and (params <= hi).all()


def test_ofa_mbv3_macs_equal_the_built_network():
    """The MACs per part the latency predictor sees add up to what torch's FLOP counter
    counts on the network build_module gives (halved), at every resolution."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from hwnas.space.ofa_mbv3 import build_module

    sp = get_space("ofa-mbv3")
    rng = np.random.default_rng(3)
    vecs = np.concatenate([sp.smallest()[None], sp.largest()[None], sp.sample(5, rng)])
    vecs[2:, -1] = [0, 1, 2, 3, 4]
    macs = sp.macs_batch(vecs)
    for v, m in zip(vecs, macs, strict=True):
        r = sp.decode(v)["r"]
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            build_module(v).eval()(torch.zeros(1, 3, r, r))
        assert fc.get_total_flops() == 2 * m
    f = sp.cost_features(vecs)
    assert f.shape == (7, 12 + 128) and np.allclose(f[:, :11].sum(axis=1), macs / 1e6)
    assert sp.cost_feature_view_names()[0] == "MACs per part + resolution"


def test_features_vectorised_shapes():
    for name in CORE_SPACES:
        sp = get_space(name)
        X = sp.sample(7, 0)
        F = sp.features(X)
        assert F.shape[0] == 7 and np.isfinite(F).all()


def test_nb201_live_edges():
    # input->1 none: edge 1->3 is dead even though it holds a conv
    x = np.array([[0, 3, 0, 0, 3, 3]])
    live, connected = live_edges(x)
    assert connected[0]
    assert live[0].tolist() == [False, True, False, False, False, True]
    live, connected = live_edges(np.zeros((1, 6), dtype=int))
    assert not connected[0] and not live.any()


def test_nb201_computed_edges_and_cost_features():
    sp = get_space("nb201")
    # 3<-2 none: node 2 feeds nothing, so 2<-0 and 2<-1 are pruned; 1<-0 none: node 1
    # gets only zeros, but 3<-1 still runs on them (it feeds the output)
    x = np.array([[0, 3, 2, 4, 3, 0]])
    assert computed_edges(x)[0].tolist() == [False, False, False, True, True, False]
    C = sp.cost_features(x)
    assert C.shape == (1, 87)
    assert C[0, 79:83].tolist() == [0, 1, 2, 1]  # every edge: skip, conv1x1, conv3x3, pool
    assert C[0, 83:87].tolist() == [0, 0, 1, 1]  # computed: conv3x3 (3<-1), pool (3<-0)
    views = sp.cost_feature_views()
    assert [len(v) for v in views] == [4, 4, 30, 79]
    # live edges are computed; computed edges need not be live
    allv = sp.all_vectors()
    live, _ = live_edges(allv)
    run = computed_edges(allv)
    assert not (live & ~run).any() and (run & ~live).any()


def test_predictor_features_and_views_follow_the_objective_kind():
    for name in ("nb201", "ofa-mbv3"):
        sp = get_space(name)
        X = sp.sample(5, 0)
        assert (sp.predictor_features(X, "quality") == sp.function_features(X)).all()
        assert (sp.predictor_features(X, "cost") == sp.cost_features(X)).all()
        assert sp.predictor_views("quality") is None
        assert len(sp.predictor_views("cost")) == len(sp.cost_feature_views())
    # every space names each of its cost views, in the same order
    from hwnas.registry import SPACES

    for name in SPACES.names():
        sp = get_space(name)
        names = sp.cost_feature_view_names()
        assert len(names) == len(sp.cost_feature_views()) == len(set(names)), name
        assert sp.predictor_view_names("quality") is None


def test_nb201_function_features_equivalence_classes():
    sp = get_space("nb201")
    # 1<-0 none: node 1 is unreachable, so 2<-1 and 3<-1 are dead whatever they hold
    base = np.array([0, 3, 0, 0, 0, 3])
    same = np.array([[0, 3, 2, 0, 3, 3], [0, 3, 4, 0, 1, 3], [0, 3, 3, 0, 2, 3]])
    F = sp.function_features(np.concatenate([base[None], same]))
    assert (F == F[0]).all()
    # 3<-2 none as well: no input-output path is left, so every disconnected cell is
    # the same (constant) function, different from base
    cut = np.array([[0, 3, 0, 0, 0, 0], [4, 1, 2, 0, 0, 0]])
    Fc = sp.function_features(cut)
    assert (Fc[0] == Fc[1]).all() and not (Fc[0] == F[0]).all()
    # a change on a live edge changes the function
    live = np.array([[0, 2, 0, 0, 0, 3], [0, 3, 0, 0, 0, 2], [0, 3, 0, 1, 0, 3]])
    Fl = sp.function_features(live)
    assert not any((row == F[0]).all() for row in Fl)
    # cost features still see dead edges (they run on the device)
    C = sp.cost_features(np.concatenate([base[None], same]))
    assert len(np.unique(C, axis=0)) == 4
    # the 15,625 cells fall into far fewer functions; size classes as in NB201
    allF = sp.function_features(sp.all_vectors())
    _, counts = np.unique(allF, axis=0, return_counts=True)
    assert counts.max() == 341 and len(counts) < 15625


def test_neighbours():
    sp = get_space("nb201")
    v = np.zeros((1, 6), dtype=np.int64)
    nb = sp.neighbours(v)
    assert len(nb) == 6 * 4
    assert ((nb != 0).sum(axis=1) == 1).all()


def test_sample_and_mutate_are_valid():
    rng = np.random.default_rng(0)
    for name in CORE_SPACES:
        sp = get_space(name)
        X = sp.sample(50, rng)
        for row in X:
            sp.validate(row)
            m = sp.mutate(row, rng)
            sp.validate(m)


def test_unknown_space():
    with pytest.raises(HwnasError, match="unknown search space"):
        get_space("nope")


@pytest.mark.parametrize("name", [*CORE_SPACES, "mbv3-cifar"])
def test_neighbours_exclude_the_given_vectors(name):
    # changing an inactive dimension canonicalises back to the vector itself
    space = get_space(name)
    x = space.sample(3, 1)
    n = space.neighbours(x)
    assert len(n) and not any((n == row).all(axis=1).any() for row in x)


def test_malformed_keys_counts_and_vectors_are_clear_errors():
    space = get_space("nb201")
    for key in ("1-2-a", "", "1.5-0-0-0-0-0"):
        with pytest.raises(HwnasError, match="bad architecture key"):
            space.from_key(key)
    for n in (-1, 1.5, True):
        with pytest.raises(HwnasError, match="count >= 0"):
            space.sample(n)
    with pytest.raises(HwnasError, match="not booleans"):
        space.validate([True, 1, 1, 1, 1, 1])
    for bad, message in (
        ([[0, 0, 0, 0, 0, -1]], "outside 0..4"),
        ([[0, 0, 0, 0, 1, 5]], "outside 0..4"),
        ([[0.7, 0, 0, 0, 0, 0]], "must hold integers"),
        ([[1, 2]], "must have 6 entries"),
        (np.ones((1, 6), dtype=bool), "must hold integers"),
    ):
        with pytest.raises(HwnasError, match=message):
            space.check_vectors(np.asarray(bad))
    assert space.check_vectors([[1.0, 2, 3, 4, 0, 1]]).dtype == np.int64


@pytest.mark.parametrize("name", ["mbv3-cifar", "mbv3-ramnas"])
@pytest.mark.parametrize(("in_channels", "num_classes"), [(3, 1000), (1, 17)])
def test_mbv3_cost_terms_batch_equals_one_at_a_time(name, in_channels, num_classes):
    """The vectorised cost model gives exactly the per-vector integers (MACs too)."""
    sp = get_space(name)
    x = np.concatenate(
        [sp.sample(400, np.random.default_rng(1)), sp.largest()[None], sp.smallest()[None]]
    )
    x[:5, sp._k_off :] = 1  # non-canonical rows: choices of unused slots set
    one = np.array([sp.cost_terms(v, in_channels, num_classes) for v in x])
    np.testing.assert_array_equal(sp.cost_terms_batch(x, in_channels, num_classes), one)
    macs = [sp.macs(v, in_channels, num_classes) for v in x]
    np.testing.assert_array_equal(sp.macs_batch(x, in_channels, num_classes), macs)
    np.testing.assert_array_equal(sp.cost_features(x), sp.cost_terms_batch(x, num_classes=1000))


@pytest.mark.parametrize("name", sorted(SPACES))
def test_helpers_check_vectors_and_leave_the_callers_alone(name):
    """keys, features, neighbours and mutate refuse a vector outside the space (not an
    IndexError or a garbage key); canonicalize returns a new array; mutate takes a seed."""
    space = get_space(name)
    bad = space.cardinalities[None, :].copy()  # one past the last choice everywhere
    for helper in (space.keys, space.features, space.neighbours, lambda v: space.mutate(v[0])):
        with pytest.raises(HwnasError, match="outside"):
            helper(bad)
    x = space.sample(3, 0)
    kept = x.copy()
    space.canonicalize(x)[:] = 0
    assert np.array_equal(x, kept)
    assert np.array_equal(space.mutate(x[0], 7), space.mutate(x[0], np.random.default_rng(7)))
    with pytest.raises(HwnasError, match="mutate takes one vector, got 3"):
        space.mutate(x)
