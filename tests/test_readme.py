"""The README's commands: the two set-up lines first, and every styledrop command in it parses as written."""

import re
import shlex
from pathlib import Path

import pytest
from typer.main import get_command

from styledrop.cli.common import app

README = Path(__file__).resolve().parents[1] / "README.md"


def _commands() -> list[list[str]]:
    """Each `styledrop …` invocation in the README's bash blocks, as argv after `styledrop`."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), re.S):
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line.endswith("..."):  # a sketch to complete ("accelerate launch … train --base amused-256 ...")
                continue
            for part in re.split(r"&&|\|", line):
                words = shlex.split(part.replace(" &", " "))
                words = [w for w in words if not re.match(r"^\d?>", w) and not w.startswith("runs/vq.log")]
                if "styledrop" in words:
                    argv = words[words.index("styledrop") + 1:]
                    if argv and argv[0] != "--":
                        out.append([w for w in argv if not w.endswith(".log")])
    return out


def test_readme_opens_with_the_two_set_up_commands():
    first = re.search(r"```bash\n(.*?)```", README.read_text(), re.S).group(1).strip().splitlines()
    assert first == ['pip install "torch==2.13.0" -e ".[test]" && styledrop demo', "python -m pytest -q"]
    ci = (README.parent / ".ci" / "run").read_text()
    assert "python -m pytest -q" in ci


@pytest.mark.parametrize("argv", _commands(), ids=lambda a: " ".join(a)[:60])
def test_every_readme_command_parses(argv):
    cmd, args = get_command(app), list(argv)
    while hasattr(cmd, "commands") and args and args[0] in cmd.commands:
        cmd = cmd.commands[args.pop(0)]
    assert not hasattr(cmd, "commands"), f"not a command: {argv}"
    cmd.make_context(argv[0], args)  # raises click's UsageError on an unknown option or a bad value


def test_the_readme_has_its_commands():
    names = {a[0] for a in _commands()}
    assert {"demo", "world", "train", "sample", "feedback", "ui", "report", "pretrain", "evaluate"} <= names
