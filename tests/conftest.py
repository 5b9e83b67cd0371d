import pytest

from styledrop.cli import main


@pytest.fixture
def cli(capsys):
    """Run the styledrop command in-process; returns (exit code, stdout, stderr)."""
    def run(*args):
        code = 0
        try:
            main([str(a) for a in args])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        out, err = capsys.readouterr()
        return code, out, err
    return run
