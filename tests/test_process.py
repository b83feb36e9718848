"""One writer per output directory, and workers that die with their parent."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from hwnas.errors import HwnasError
from hwnas.process import LOCK_NAME, out_dir_lock


def test_a_second_writer_is_refused_and_the_lock_ends_with_its_holder(
    tmp_path, data_dir, held_elsewhere
):
    from hwnas.search.runner import run_search

    out = tmp_path / "run"
    with held_elsewhere(out, "profile"):
        with pytest.raises(HwnasError, match=rf"'{out}' is in use by another hwnas run \(profile"):
            run_search({"algorithm": "random", "evaluations": 5}, out=out)
        assert not (out / "results.sqlite").exists()
    summary = run_search({"algorithm": "random", "evaluations": 5}, out=out)  # released
    assert summary["evaluations"] == 5
    assert (out / LOCK_NAME).is_file()
    assert not list(out.glob(".*.tmp*"))  # outputs were renamed into place
    # this process may take a directory it holds again (a command, then the library)
    with out_dir_lock(out, "search"), out_dir_lock(out, "search"):
        pass
    # a holder killed with SIGKILL leaves no stale lock
    code = f"from hwnas.process import out_dir_lock\nwith out_dir_lock({str(out)!r}):\n"
    code += "    print('locked', flush=True)\n    import time; time.sleep(60)\n"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    with pytest.raises(HwnasError, match="in use"), out_dir_lock(out):
        pass
    proc.kill()
    proc.wait(10)
    with out_dir_lock(out):
        pass
    # an output path that is a file, or lies under one: one line (it was 'File exists')
    (tmp_path / "afile").write_text("x")
    with (
        pytest.raises(HwnasError, match="afile exists and is not a directory"),
        out_dir_lock(tmp_path / "afile"),
    ):
        pass
    with (
        pytest.raises(HwnasError, match="'.*afile' is a file, not a directory"),
        out_dir_lock(tmp_path / "afile" / "run"),
    ):
        pass


def test_study_refused_while_its_dir_is_in_use(tmp_path, data_dir, held_elsewhere):
    from hwnas.search.efficiency import search_efficiency

    with held_elsewhere(tmp_path, "search"), pytest.raises(HwnasError, match="run .search"):
        search_efficiency("nb201", ["fpga"], ["random"], 5, 1, records=tmp_path / "records.jsonl")


def test_study_records_are_rewritten_whole_or_not_at_all(tmp_path, monkeypatch):
    from hwnas.search import efficiency

    path = tmp_path / "records.jsonl"
    path.write_text('{"key": "a", "record": {}}\n')

    def boom(*args):
        raise OSError("killed")

    monkeypatch.setattr(efficiency.os, "replace", boom)
    with pytest.raises(OSError):
        efficiency._rewrite(path, {"b": {}})
    assert path.read_text() == '{"key": "a", "record": {}}\n'  # not emptied


def test_pool_workers_die_with_their_parent(tmp_path):
    script = textwrap.dedent(
        """
        import os, time
        from concurrent.futures import ProcessPoolExecutor
        from hwnas.process import die_with_parent

        with ProcessPoolExecutor(1, initializer=die_with_parent, initargs=(os.getpid(),)) as ex:
            print(ex.submit(os.getpid).result(), flush=True)
            ex.submit(time.sleep, 60)
            time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    worker = int(proc.stdout.readline())
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(worker, signal.SIGKILL)
    pytest.fail("the worker outlived its killed parent")


def test_a_run_refused_by_its_checks_leaves_no_empty_folder(tmp_path):
    """A folder the lock made, holding nothing but the lock when the run ends (refused
    by a check after locking), is removed; one that was there, or holds output, stays."""
    new = tmp_path / "a" / "new"
    with pytest.raises(HwnasError, match="bad budget"), out_dir_lock(new, "search"):
        raise HwnasError("bad budget")
    assert not new.exists() and (tmp_path / "a").is_dir()  # only the folder it made
    with out_dir_lock(new, "search"), out_dir_lock(new, "search"):  # nested: the outer cleans
        (new / "results.sqlite").write_text("x")
    assert (new / "results.sqlite").is_file()
    there = tmp_path / "there"
    there.mkdir()
    with out_dir_lock(there):
        pass
    assert there.is_dir() and [p.name for p in there.iterdir()] == [LOCK_NAME]


def test_sigterm_ends_a_pool_at_once_and_nested_blocks_say_terminated(tmp_path):
    """SIGTERM in a command with a process pool (bench search-efficiency --jobs, dsearch
    lug): exit 143 with the hint at once, queued jobs cancelled, running ones stopped
    (not after every job); nested on_interrupt blocks report it as SIGTERM too, and the
    default action is back afterwards."""
    script = tmp_path / "pool.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, signal, sys, time
            from concurrent.futures import ProcessPoolExecutor, as_completed
            from hwnas.cli_train import on_interrupt
            from hwnas.process import die_with_parent, stop_pool

            def job(i):
                time.sleep(3)
                return i

            if __name__ == "__main__":
                if sys.argv[1] == "nested":
                    try:
                        with on_interrupt(lambda: "outer"), on_interrupt(lambda: "inner"):
                            os.kill(os.getpid(), signal.SIGTERM)
                            time.sleep(5)
                    finally:
                        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
                with on_interrupt(lambda: "hint"), ProcessPoolExecutor(
                    2, initializer=die_with_parent, initargs=(os.getpid(),)
                ) as pool:
                    try:
                        futures = [pool.submit(job, i) for i in range(10)]
                        print("started", flush=True)
                        for f in as_completed(futures):
                            f.result()
                    except BaseException:
                        stop_pool(pool)
                        raise
            """
        )
    )
    nested = subprocess.run(
        [sys.executable, str(script), "nested"], capture_output=True, text=True, timeout=60
    )
    assert nested.returncode == 143 and "terminated; inner" in nested.stderr
    proc = subprocess.Popen(
        [sys.executable, str(script), "pool"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert proc.stdout.readline().strip() == "started"
    time.sleep(0.5)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "terminated; hint" in err
    assert time.monotonic() - t0 < 2.5  # not the 15 s of the queued jobs, nor one job's 3 s


def _race_worker(out, barrier, results):
    """One of two runs started at the same moment on one new folder."""
    barrier.wait()
    try:
        with out_dir_lock(out, "race"):
            time.sleep(0.2)
            (out / "result.txt").write_text("ok")
            results.put("wrote")
    except HwnasError:
        results.put("refused")
    except OSError as exc:  # the folder removed under the winner
        results.put(f"OSError {exc}")


def test_two_runs_racing_for_a_new_folder_one_writes_one_is_refused(tmp_path):
    """The refused run must not clean up the folder the winner works in."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    for trial in range(6):
        out = tmp_path / f"race{trial}"
        barrier, results = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=_race_worker, args=(out, barrier, results)) for _ in "ab"]
        for p in procs:
            p.start()
        for p in procs:
            p.join(30)
        assert sorted(results.get(timeout=5) for _ in procs) == ["refused", "wrote"]
        assert (out / "result.txt").read_text() == "ok"


def test_sigterm_inside_an_exec_still_exits_143_under_python_m(tmp_path):
    """SIGTERM that lands while a string is exec'd (a dataclass or namedtuple being
    built by a lazy import) must still end ``python -m`` with 143: CPython otherwise
    remembers the KeyboardInterrupt and dies of SIGINT at exit (CI saw -2)."""
    (tmp_path / "exec_term.py").write_text(
        textwrap.dedent(
            """
            from hwnas.cli_train import on_interrupt

            with on_interrupt(lambda: "hint"):
                exec("import os, signal, time\\nos.kill(os.getpid(), signal.SIGTERM)\\n"
                     "time.sleep(5)")
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run(
        [sys.executable, "-m", "exec_term"], capture_output=True, text=True, timeout=60,
        env=env, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 143, done.stderr
    assert "terminated; hint" in done.stderr
