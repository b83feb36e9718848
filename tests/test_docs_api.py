"""docs/API.md's code blocks run as written (in order, one namespace, in a fresh folder)."""

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "API.md"


def test_the_api_page_runs_as_written(tmp_path, data_dir, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 5
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "docs_api"}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)
    out = capsys.readouterr().out
    assert "60 40" in out  # resume_search: 60 evaluations, resumed from the 40 stored
    assert (tmp_path / "runs" / "api-memory" / "pareto.csv").is_file()
    assert "[('accuracy', 'max'), ('score', 'max')]" in out
    memory = namespace["problem"]  # the last problem: the tiny CNN space
    assert memory.n_evaluated == 20
    import importlib.resources

    assert (importlib.resources.files("hwnas") / "py.typed").is_file()  # PEP 561 marker
