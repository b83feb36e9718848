"""``hwnas data fetch``: downloads, checksums, converters (no internet: loopback only)."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hwnas import fetch as F
from hwnas.config import data_dir as config_data_dir
from hwnas.errors import HwnasError

HAT_FILE = "hat/wmt14ende_cpu_xeon_all.csv"


@pytest.fixture(scope="module")
def shared() -> Path:
    """The reference data dir ($HWNAS_DATA_DIR); the tests need it, so fail if missing."""
    root = config_data_dir()
    if not (root / HAT_FILE).is_file():
        pytest.fail(f"reference data dir {root} lacks {HAT_FILE}; set HWNAS_DATA_DIR")
    return root


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on 127.0.0.1 (ephemeral port) serving a temp dir."""
    root = tmp_path / "mirror"
    root.mkdir()
    handler = functools.partial(_Quiet, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture(autouse=True)
def _no_mirror(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in __import__("os").environ if k.startswith(F.ENV_MIRROR)]:
        monkeypatch.delenv(key)


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# ---- fetching through a mirror ------------------------------------------------------------
def test_fetch_from_mirror_verifies_and_skips_second_time(shared, server, tmp_path, monkeypatch):
    url, mirror = server
    for f in F.DATASETS["hat"].products:
        (mirror / f.path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared / f.path, mirror / f.path)
    monkeypatch.setenv(F.ENV_MIRROR, url)
    out = tmp_path / "data"
    msgs: list[str] = []
    paths = F.fetch("hat", out, log=msgs.append)
    assert sorted(str(p.relative_to(out)) for p in paths) == sorted(F._HAT_FILES)
    for p in F.DATASETS["hat"].products:
        assert F.sha256_file(out / p.path) == p.sha256
    assert _files(out) == sorted(F._HAT_FILES)  # no temp or .part files left
    assert any("downloading" in m for m in msgs)

    # Second fetch: nothing downloaded (the mirror is even gone), files kept.
    shutil.rmtree(mirror)
    mirror.mkdir()
    msgs.clear()
    again = F.fetch("hat", out, log=msgs.append)
    assert again == paths
    assert not any("downloading" in m for m in msgs)
    assert all("already present" in m for m in msgs)

    # a damaged local copy: said, and replaced (the mirror is back); data list --verify
    # tells it from a good one before
    damaged = out / F.DATASETS["hat"].products[0].path
    damaged.write_bytes(damaged.read_bytes()[:-10])
    hat = {r["file"]: r["verified"] for r in F.data_status(out, verify=True) if r["name"] == "hat"}
    assert hat[F.DATASETS["hat"].products[0].path] is False
    assert sum(hat.values()) == len(hat) - 1
    from typer.testing import CliRunner

    import hwnas.cli as cli

    res = CliRunner().invoke(cli.app, ["data", "list", "--data-dir", str(out), "--verify"])
    assert "1 file(s) fail their check" in res.output and res.exit_code == 1
    args = ["data", "list", "--data-dir", str(out), "--verify", "--json"]
    res = CliRunner().invoke(cli.app, args)
    assert res.exit_code == 1 and any(r["verified"] is False for r in json.loads(res.stdout))
    for f in F.DATASETS["hat"].products:
        (mirror / f.path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared / f.path, mirror / f.path)
    msgs.clear()
    F.fetch("hat", out, log=msgs.append)
    assert any("present but fails its check (damaged or changed); replacing it" in m for m in msgs)
    assert F.sha256_file(damaged) == F.DATASETS["hat"].products[0].sha256
    shutil.rmtree(mirror)
    mirror.mkdir()

    # force=True downloads again (and fails now that the mirror is empty).
    with pytest.raises(HwnasError, match="cannot download"):
        F.fetch("hat", out, force=True, log=msgs.append)


def test_per_dataset_mirror_overrides_global(
    shared, server, tmp_path, monkeypatch, unreachable_url
):
    url, mirror = server
    rel = "images/mnist_test_10k.npz"
    (mirror / "images").mkdir()
    shutil.copy(shared / rel, mirror / rel)
    monkeypatch.setenv(F.ENV_MIRROR, unreachable_url)
    monkeypatch.setenv(f"{F.ENV_MIRROR}_MNIST", url + "/")
    assert F.mirror_for("mnist") == url
    out = tmp_path / "data"
    assert F.fetch("mnist", out, log=lambda m: None) == [out / rel]
    assert F.sha256_file(out / rel) == F.DATASETS["mnist"].products[0].sha256


def test_tampered_file_gives_checksum_error_and_is_deleted(shared, server, tmp_path, monkeypatch):
    url, mirror = server
    for f in F.DATASETS["hat"].products:
        (mirror / f.path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared / f.path, mirror / f.path)
    bad = mirror / F.DATASETS["hat"].products[0].path
    bad.write_bytes(bad.read_bytes().replace(b"640", b"641", 1))
    monkeypatch.setenv(F.ENV_MIRROR, url)
    out = tmp_path / "data"
    with pytest.raises(HwnasError, match="checksum mismatch") as exc:
        F.fetch("hat", out, log=lambda m: None)
    assert F.DATASETS["hat"].products[0].path in str(exc.value)
    assert _files(out) == []


def test_unknown_name_lists_known_names(tmp_path):
    with pytest.raises(HwnasError, match="unknown data set 'nope'") as exc:
        F.fetch("nope", tmp_path)
    for name in ("nb201", "fbnet", "ofa", "hat", "mnist", "cifar10", "flowers17", "images"):
        assert name in str(exc.value)


def test_unreachable_url_says_cannot_download(tmp_path, monkeypatch, unreachable_url):
    monkeypatch.setenv(F.ENV_MIRROR, unreachable_url)
    out = tmp_path / "data"
    with pytest.raises(HwnasError, match=r"cannot download .* are you offline\?") as exc:
        F.fetch("hat", out, log=lambda m: None, timeout=5)
    assert str(out) in str(exc.value)
    assert _files(out) == []


def test_http_404_from_upstream_source_is_a_clear_error(server, tmp_path):
    url, _ = server
    ds = F.DataSet(
        name="t",
        description="",
        licence="",
        homepage="",
        sources=(F.Source("x", (f"{url}/missing.yaml",), "test"),),
        products=(F.Product("t/x.yaml", sha256="0" * 64, kind="verbatim", build=F._verbatim("x")),),
    )
    ctx = F._Context(ds=ds, root=tmp_path, work=tmp_path / "w", timeout=5, log=lambda m: None)
    with pytest.raises(HwnasError, match="HTTP 404"):
        ctx.get("x")


def test_upstream_source_checksum_is_checked(server, tmp_path):
    url, mirror = server
    (mirror / "a.bin").write_bytes(b"hello")
    src = F.Source("a", (f"{url}/a.bin",), "test", md5=hashlib.md5(b"other").hexdigest())
    ds = F.DataSet("t", "", "", "", (src,), ())
    ctx = F._Context(ds=ds, root=tmp_path, work=tmp_path / "w", timeout=5, log=lambda m: None)
    with pytest.raises(HwnasError, match="checksum mismatch for a"):
        ctx.get("a")
    assert not (tmp_path / "w" / "a").exists()


def test_manual_data_set_explains_steps(tmp_path):
    assert not F.DATASETS["flowers17"].convertible
    assert F.DATASETS["flowers17"].reason
    with pytest.raises(HwnasError, match="manual steps") as exc:
        F.fetch("flowers17", tmp_path, log=lambda m: None)
    assert "images/flowers17_16px.npz" in str(exc.value)
    assert F.ENV_MIRROR in str(exc.value)


# ---- converters on synthetic upstream-format input ---------------------------------------
def test_ofa_yaml_lut_converts_to_the_reference_json(shared, tmp_path):
    import yaml

    ref = json.loads((shared / "ofa/ofa_mbv3_note10_latency_lut.json").read_text())
    # Upstream format (once-for-all tutorial/checkpoints/latency_table@note10/160_...yaml):
    # "<op key>:\n  count: N\n  mean: M\n  std: S" per op, keys sorted.
    hand_written = (
        "AvgPool2D-input:5x5x1152-output:1x1x1152:\n"
        "  count: 491\n  mean: 0.008482688391038698\n  std: 0.0006733248071883371\n"
        "Conv-input:160x160x3-output:80x80x24:\n"
        "  count: 498\n  mean: 0.495562248995984\n  std: 0.010239557348882489\n"
    )
    yamls = {160: tmp_path / "160_lookup_table.yaml"}
    yamls[160].write_text(hand_written)
    for res in (176, 224):
        keys = sorted(ref[str(res)])[:4]
        yamls[res] = tmp_path / f"{res}_lookup_table.yaml"
        yamls[res].write_text(yaml.safe_dump({k: ref[str(res)][k] for k in keys}))
    out = tmp_path / "lut.json"
    F.convert_ofa_lut(yamls, out)
    got = json.loads(out.read_text())
    assert list(got) == ["160", "176", "224"]
    for res, table in got.items():
        assert table == {k: ref[res][k] for k in table}
    assert len(got["160"]) == 2

    # With all entries of all five resolutions, the output is the reference file, bytes too.
    for res in F.OFA_LUT_RESOLUTIONS:
        yamls[res] = tmp_path / f"{res}_lookup_table.yaml"
        yamls[res].write_text(yaml.safe_dump(ref[str(res)]))
    F.convert_ofa_lut(yamls, out)
    lut = F.DATASETS["ofa"].products[0]
    assert F.sha256_file(out) == lut.sha256


def test_ofa_lut_converter_rejects_wrong_format(tmp_path):
    bad = tmp_path / "160.yaml"
    bad.write_text("Conv-input:1x1x3-output:1x1x3:\n  count: 3\n")
    with pytest.raises(ValueError, match="no 'mean'"):
        F.convert_ofa_lut({160: bad}, tmp_path / "out.json")


def _idx(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(n.to_bytes(4, "big") for n in arr.shape)
    return gzip.compress(header + arr.astype(np.uint8).tobytes())


def test_mnist_idx_converts_to_the_reference_content(shared, tmp_path):
    with np.load(shared / "images/mnist_test_10k.npz") as d:
        x, y = d["x"], d["y"]
    (tmp_path / "i.gz").write_bytes(_idx(x))
    (tmp_path / "l.gz").write_bytes(_idx(y))
    out = tmp_path / "mnist.npz"
    F.convert_mnist(tmp_path / "i.gz", tmp_path / "l.gz", out)
    prod = F.DATASETS["mnist"].products[0]
    assert F.content_digest(out) == prod.content_sha256
    assert F._matches_reference(prod, out) in ("sha256", "content")


def test_read_idx_rejects_truncated_file():
    data = gzip.decompress(_idx(np.zeros((2, 3, 3), np.uint8)))
    with pytest.raises(ValueError, match="header says"):
        F.read_idx(data[:-1])


def test_minibench_pickle_converts_to_the_reference_csv(shared, tmp_path):
    ref = shared / F.NB201_MINIBENCH
    df = pd.read_csv(ref)
    df["cellstr"] = df["cellstr"].astype(object)
    df.to_pickle(tmp_path / "mini-bench-arch-cell-accs.pd")
    out = tmp_path / "mini.csv"
    F.convert_minibench(tmp_path / "mini-bench-arch-cell-accs.pd", out)
    assert F.sha256_file(out) == F.DATASETS["nb201"].products[0].sha256
    F._check_minibench(out)


def test_safe_unpickle_refuses_code():
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        F.safe_unpickle(pickle.dumps(Evil()))
    arr = np.arange(5.0)
    assert np.array_equal(F.safe_unpickle(pickle.dumps(arr)), arr)


def test_state_dict_converts_to_the_reference_npz(shared, tmp_path):
    torch = pytest.importorskip("torch")
    ref = shared / "ofa/ofa_mbv3_acc_predictor.npz"
    with np.load(ref) as d:
        state = {k.replace("_", "."): torch.from_numpy(d[k].copy()) for k in d.files}
    torch.save(state, tmp_path / "acc_predictor.pth")
    out = tmp_path / "acc.npz"
    F.convert_state_dict(F._torch_load(tmp_path / "acc_predictor.pth"), out)
    prod = next(p for p in F.DATASETS["ofa"].products if p.path.endswith("mbv3_acc_predictor.npz"))
    assert F.content_digest(out) == prod.content_sha256


def test_content_checks_reject_bad_help_latency(tmp_path):
    out = tmp_path / "fbnet.npz"
    np.savez(
        out,
        op_idx=np.zeros((5000, 22), np.int8),
        devices=np.array(F.FBNET_HELP_DEVICES),
        latency_ms=-np.ones((5000, len(F.FBNET_HELP_DEVICES))),
        op_names=np.array(F.FBNET_OPS),
    )
    with pytest.raises(ValueError, match="<= 0"):
        F._check_fbnet_help(out)


# ---- the manifest and data_status --------------------------------------------------------
def test_manifest_matches_the_reference_files(shared):
    for ds in F.DATASETS.values():
        assert ds.products
        for p in ds.products:
            path = shared / p.path
            assert F.sha256_file(path) == p.sha256, p.path
            if p.content_sha256:
                assert F.content_digest(path) == p.content_sha256, p.path
            if p.check is not None:
                p.check(path)
            if p.convertible:
                assert p.build is not None, p.path
                for key in p.sources:
                    src = ds.source(key)
                    assert src.urls and src.found_in
            else:
                assert p.reason and p.manual_steps, p.path
        for src in ds.sources:
            assert all(u.startswith(("https://", "http://")) for u in src.urls)


def test_data_status_reports_everything_present(shared):
    rows = F.data_status()  # reads $HWNAS_DATA_DIR through hwnas.config.data_dir
    assert {r["name"] for r in rows} == set(F.DATASETS)
    assert len(rows) == sum(len(ds.products) for ds in F.DATASETS.values())
    missing = [r["file"] for r in rows if not r["present"]]
    assert not missing, f"missing from {shared}: {missing}"
    for r in rows:
        assert set(r) == {"name", "file", "present", "source"}
        assert r["source"]
    assert {"nb201/nb201_acc200_latency27.csv.gz", "ofa/ofa_mbv3_note10_latency_lut.json"} <= {
        r["file"] for r in rows
    }


def test_data_status_on_empty_dir(tmp_path):
    rows = F.data_status(tmp_path)
    assert rows and not any(r["present"] for r in rows)
    assert all(r["verified"] is None for r in F.data_status(tmp_path, verify=True))


def test_data_list_shows_whole_paths_on_a_narrow_terminal(tmp_path, monkeypatch):
    """'hwnas data list' folds long file names onto more lines, never cuts them (the 20
    CIFAR-10 shards all read 'images/cifar10/cifar10_te...' when cut)."""
    import io

    from rich.console import Console
    from typer.testing import CliRunner

    import hwnas.cli as cli

    console = Console(width=70, record=True, file=io.StringIO())
    monkeypatch.setattr(cli, "out_console", console)
    res = CliRunner().invoke(cli.app, ["data", "list", "--data-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    text = console.export_text()
    assert "cifar10" in text and "…" not in text
    assert "data sets in" in text and "(missing)" not in text  # the folder it looked in
    res = CliRunner().invoke(cli.app, ["data", "list", "--data-dir", str(tmp_path / "nope")])
    assert "(missing)" in console.export_text()


def test_fetch_builds_from_upstream_format_sources(shared, server, tmp_path, monkeypatch):
    """End to end without a mirror: upstream-format MNIST files served on loopback are
    downloaded, converted, verified and put in place; the work dir is removed."""
    import dataclasses

    url, mirror = server
    with np.load(shared / "images/mnist_test_10k.npz") as d:
        (mirror / "t10k-images-idx3-ubyte.gz").write_bytes(_idx(d["x"]))
        (mirror / "t10k-labels-idx1-ubyte.gz").write_bytes(_idx(d["y"]))
    ds = F.DATASETS["mnist"]
    local = dataclasses.replace(
        ds,
        sources=tuple(
            dataclasses.replace(s, urls=(f"{url}/{s.key}",), md5=None) for s in ds.sources
        ),
    )
    monkeypatch.setitem(F.DATASETS, "mnist", local)
    out = tmp_path / "data"
    msgs: list[str] = []
    assert F.fetch("mnist", out, log=msgs.append) == [out / "images/mnist_test_10k.npz"]
    assert _files(out) == ["images/mnist_test_10k.npz"]
    assert any("verified images/mnist_test_10k.npz" in m for m in msgs)


def test_missing_file_error_says_how_to_get_it(tmp_path):
    from hwnas.config import data_file
    from hwnas.errors import DataNotFoundError

    # the NB201 table needs manual steps: 'data fetch' alone cannot supply it
    with pytest.raises(DataNotFoundError, match="manual steps 'hwnas data fetch nb201'"):
        data_file("nb201/nb201_acc200_latency27.csv.gz", tmp_path)
    with pytest.raises(DataNotFoundError, match="run 'hwnas data fetch ofa'"):
        data_file("ofa/ofa_mbv3_acc_predictor.npz", tmp_path)


def test_offline_fetch_still_says_the_manual_steps_once_per_kind(tmp_path, monkeypatch):
    """A download that fails (offline) is reported together with the files that need
    manual steps (the NB201 table), and files sharing their steps (CIFAR-10's shards)
    are named in one paragraph, not one each; nothing is left behind for them."""

    def offline(url, *args, **kwargs):
        raise HwnasError(f"cannot download {url}: DNS lookup failed; are you offline?")

    monkeypatch.setattr(F, "download", offline)
    monkeypatch.delenv(F.ENV_MIRROR, raising=False)
    with pytest.raises(HwnasError) as exc:
        F.fetch("nb201", tmp_path, log=lambda m: None)
    text = str(exc.value)
    assert text.startswith("cannot download") and "are you offline?" in text
    assert "nb201/nb201_acc200_latency27.csv.gz" in text and "Manual steps:" in text
    with pytest.raises(HwnasError) as exc:
        F.fetch("cifar10", tmp_path, log=lambda m: None)
    text = str(exc.value)
    shards = [
        p.path for p in F.DATASETS["cifar10"].products if not p.convertible or p.build is None
    ]
    assert len(shards) > 1 and all(s in text for s in shards)
    assert text.count("Manual steps:") < len(shards)
    assert not (tmp_path / "images").exists()  # no empty folders for what was not fetched
