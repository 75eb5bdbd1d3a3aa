"""Every ``dexworld ...`` command shown in README.md and docs/*.md parses with the real argument parser, and the
README's shell workflow runs end to end at small sizes, so the docs cannot drift from the CLI again.

Parse-only (not run here), with the reason: training, caching and conversion need minutes to hours or a 14B base
model and GPUs (train, cache, convert-upstream, train-probe); the editor serves until Ctrl+C (edit); the others
need data that is not in the repository (annotate, ingest-humanoid-everyday, import-lerobot of a Unitree dataset,
check-upstream's reference file) or large synthetic sets (synth with hundreds of episodes). The cheap ones and the
README workflow run below.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from dexworld.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_WORDS = {";", "&", "&&", "||", "|", "do", "done", "then", "fi"}
SUBSTITUTE = {"$emb": "inspire_right"}


def _argv_after_dexworld(line: str) -> list[str] | None:
    """The arguments after ``dexworld`` (or ``-m dexworld.cli``) in one shell line, or None if it has none."""
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError:
        return None
    start = next((i for i, t in enumerate(tokens) if t == "dexworld" or t.endswith("/dexworld")
                  or t == "dexworld.cli"), None)
    if start is None or start + 1 >= len(tokens) or not re.fullmatch(r"-?-?[a-z][a-z-]*", tokens[start + 1]):
        return None  # prose or a diagram that mentions dexworld, not a command
    argv = []
    for t in tokens[start + 1:]:
        if t in SHELL_WORDS:
            break
        argv.append(SUBSTITUTE.get(t, t.replace("$emb", "inspire_right")))
    return [t for t in argv if t not in ("...", "…")]


def doc_commands() -> list[tuple[str, list[str]]]:
    """(file:line, argv) of every dexworld command in a fenced code block, and of README table cells."""
    found = []
    for path in DOCS:
        lines = path.read_text().splitlines()
        fenced, i = False, 0
        while i < len(lines):
            line, where = lines[i], f"{path.relative_to(ROOT)}:{i + 1}"
            if line.lstrip().startswith("```"):
                fenced = not fenced
            elif fenced:
                while line.rstrip().endswith("\\") and i + 1 < len(lines):
                    i += 1
                    line = line.rstrip()[:-1] + " " + lines[i]
                argv = _argv_after_dexworld(line)
                if argv:
                    found.append((where, argv))
            elif path.name == "README.md" and line.startswith("|"):
                for span in re.findall(r"`(dexworld [^`]+)`", line):
                    if "\\|" not in span:
                        argv = _argv_after_dexworld(span)
                        if argv and len(argv) > 1:
                            found.append((where, argv))
            i += 1
    return found


def variants(argv: list[str]) -> list[list[str]]:
    """Without the optional ``[...]`` groups, and (when none holds alternatives ``|``) with all of them."""
    bare, full, depth, has_alternatives = [], [], 0, False
    for t in argv:
        opens, closes = t.startswith("["), t.endswith("]")
        if opens:
            depth += 1
        if depth:
            has_alternatives |= "|" in t  # a choice: "a | b" or "a|b"
            full.append(t.strip("[]"))
        else:
            bare.append(t)
            full.append(t)
        if closes and depth:
            depth -= 1
    return [bare] if has_alternatives or full == bare else [bare, full]


COMMANDS = doc_commands()


def test_the_docs_show_every_subcommand():
    shown = {argv[0] for _, argv in COMMANDS}
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    missing = set(sub.choices) - shown
    assert len(COMMANDS) >= 40 and not missing, missing


@pytest.mark.parametrize("where, argv", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_doc_command_parses(where, argv, monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # the GPU examples, as on a GPU machine
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    for args in variants(argv):
        try:
            build_parser().parse_args(args)
        except SystemExit:
            pytest.fail(f"{where}: `dexworld {' '.join(args)}` does not parse: {capsys.readouterr().err.strip()}")


def _readme_workflow() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    block = next(b for b in re.findall(r"```bash\n(.*?)```", text, re.S) if "dexworld motion" in b)
    lines = block.replace("\\\n", " ").splitlines()
    return [argv for argv in map(_argv_after_dexworld, lines) if argv]


def test_readme_shell_workflow_runs(tmp_path, monkeypatch, capsys):
    """motion → retarget → simulate (joints + reference frame) → generate, as typed; `edit` is parse-only (a server)."""
    monkeypatch.chdir(tmp_path)
    workflow = _readme_workflow()
    assert [a[0] for a in workflow] == ["motion", "retarget", "simulate", "generate", "edit"]
    small = {"generate": ["--steps", "1", "--height", "64", "--width", "64"]}
    for argv in workflow[:-1]:
        assert main([*argv, *small.get(argv[0], [])]) == 0, capsys.readouterr().err
    assert (tmp_path / "imagined.mp4").stat().st_size > 0
    assert "generating 17 frames at 64x64" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["embodiments", "list"], ["embodiments", "show", "inspire_right"]])
def test_cheap_doc_commands_run(argv, capsys):
    assert any(a == argv for _, a in COMMANDS)
    assert main(argv) == 0 and capsys.readouterr().out


def test_docs_point_at_no_path_outside_the_repository():
    for path in DOCS:
        assert "../shared" not in path.read_text(), path


def test_worldmodel_editing_example_runs_on_17_frame_joints(tmp_path, monkeypatch):
    from test_view_check import joints_for

    text = (ROOT / "docs" / "worldmodel.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "edit_joints(" in b)
    monkeypatch.chdir(tmp_path)
    joints_for(64, T=17).save("joints.npz")
    scope: dict = {}
    exec(compile(block, "docs/worldmodel.md", "exec"), scope)  # noqa: S102 (our own documentation)
    for name in ("moved", "tip", "turn"):
        assert len(scope[name]) == 17 and not np.array_equal(scope[name].positions, scope["joints"].positions)
