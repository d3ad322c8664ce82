"""The README's claims that a machine can check: every deblur command and flag it shows parses and exists,
every choice it lists is offered, every make target and every path of its Layout exists."""

from __future__ import annotations

import os
import re
import shlex

import pytest

from deblur.cli import parser

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = open(os.path.join(ROOT, "README.md")).read()


def _blocks(text: str) -> list[str]:
    """The fenced code blocks of ``text`` (also those indented in a list item), in order, dedented."""
    blocks, current, indent = [], None, 0
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            if current is None:
                current, indent = [], len(line) - len(line.lstrip())
            else:
                blocks.append("\n".join(current))
                current = None
        elif current is not None:
            current.append(line[indent:])
    return blocks


BLOCKS = _blocks(README)


def _subparsers() -> dict:
    return parser()._subparsers._group_actions[0].choices


def _usages(inline: bool = True) -> list[tuple[str, str]]:
    """(command, text) of each ``deblur COMMAND ...`` the README shows: block lines (with their
    continuation lines) and, with ``inline``, inline code spans (often fragments)."""
    found = []
    for block in BLOCKS:
        current = None
        for line in block.splitlines():
            if m := re.match(r"\s*deblur (\w+)(.*)", line):
                current = [m.group(1), m.group(2)]
                found.append(current)
            elif current and line.startswith(" ") and line.strip().startswith(("[", "--")):
                current[1] += " " + line.strip()
            else:
                current = None
    if inline:
        found += [list(m) for m in re.findall(r"`deblur (\w+)([^`]*)`", README)]
    return [(c, t) for c, t in found]


def test_the_readme_shows_commands():
    commands = {c for c, _ in _usages()}
    assert {"train", "run", "eval", "degrade", "demo", "inspect", "sprite"} <= commands


@pytest.mark.parametrize("command, text", _usages())
def test_every_command_and_flag_the_readme_shows_exists(command, text):
    sub = _subparsers()
    assert command in sub or command == "blur", command  # 'deblur blur': the older name, mentioned as such
    if command == "blur":
        return
    flags = {s: a for a in sub[command]._actions for s in a.option_strings}
    for flag, choices in re.findall(r"(--[a-z][a-z-]*)(?:[ =]([a-z0-9]+(?:\|[a-z0-9]+)+))?", text):
        assert flag in flags, f"deblur {command} has no {flag}"
        if choices:  # a list like png|jpg|webp: each is offered
            offered = {str(c) for c in flags[flag].choices or ()}
            assert set(choices.split("|")) <= offered, f"deblur {command} {flag}: {choices} vs {sorted(offered)}"


def test_full_commands_in_the_readme_parse():
    """A block line with no [optional] or placeholder parts is a command a user pastes: it must parse."""
    pasted = [(c, t) for c, t in _usages(inline=False) if "[" not in t and "URI" not in t]
    assert pasted
    for command, text in pasted:
        parser().parse_args([command, *shlex.split(text.split("#")[0].replace("\\", ""))])


def test_every_make_target_the_readme_names_exists():
    makefile = open(os.path.join(ROOT, "Makefile")).read()
    targets = set(re.findall(r"^([a-z][\w/-]*):", makefile, re.M))
    named = set(re.findall(r"`make ([a-z][a-z-]+)", README))
    named |= {m for block in BLOCKS for m in re.findall(r"^make ([a-z][a-z-]+)", block, re.M)}
    assert named and named <= targets, named - targets


def test_every_path_in_the_layout_exists():
    block = _blocks(README[README.index("## Layout"):])[0]
    names = []
    for first, second in re.findall(r"^([\w./-]+/?)(?:,\s*([\w./-]+))?", block, re.M):
        names.append(first)
        if second:  # "deblur/cli.py, demo.py": the second beside the first
            names.append(second if "/" in second else os.path.join(os.path.dirname(first), second))
    assert len(names) > 15
    for name in names:
        assert os.path.exists(os.path.join(ROOT, name)), name


def test_make_torch_cpu_installs_the_cpu_build_first_and_the_default_does_not():
    """``make demo TORCH=cpu`` (README): torch and torchvision from PyTorch's CPU index, through the lock,
    before the package (which then finds them installed); without TORCH nothing is taken from that index."""
    import subprocess

    def lines(*extra: str) -> list[str]:
        out = subprocess.run(["make", "-n", "-B", "install", "VENV=/nonexistent/venv", *extra], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
        return [line for line in out.splitlines() if "pip install" in line]

    cpu = lines("TORCH=cpu")
    assert "make demo TORCH=cpu" in README
    assert "--index-url https://download.pytorch.org/whl/cpu torch torchvision" in cpu[1]
    assert "-c constraints.txt" in cpu[1] and "-e '.[test,s3]'" in cpu[2]
    assert not any("download.pytorch.org" in line for line in lines())


def test_the_data_make_article_reads_comes_with_the_clone():
    """Issue 39: `make article` read ../shared/data, which a clone does not have; the sprite is in the clone."""
    makefile = open(os.path.join(ROOT, "Makefile")).read()
    sprite = re.search(r"^SPRITE \?= (\S+)$", makefile, re.M)[1]
    assert not sprite.startswith("..") and os.path.isfile(os.path.join(ROOT, sprite))
    assert os.path.isfile(os.path.join(os.path.dirname(os.path.join(ROOT, sprite)), "LICENSE"))
    assert "$(SPRITE)" in makefile[makefile.index("\narticle:"):makefile.index("\narticle-fashion-mnist:")]
