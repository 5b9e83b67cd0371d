import json

from PIL import Image

from styledrop import world


def test_world_command_writes_images_metadata_and_grid(cli, tmp_path):
    out = tmp_path / "w"
    code, _, _ = cli("world", "--n", 6, "--out", out, "--style", "lava", "--seed", 3)
    assert code == 0
    rows = [json.loads(x) for x in (out / "metadata.jsonl").read_text().splitlines()]
    assert len(rows) == 6
    assert {r["style"] for r in rows} == {"lava"} and {r["split"] for r in rows} <= set(world.SPLITS)
    for r in rows:
        assert Image.open(out / r["file"]).size == (64, 64)
        assert r["caption"] and r["content"] in world.CONTENTS
    assert (out / "grid.png").is_file()
    # same seed -> byte-identical files
    code, _, _ = cli("world", "--n", 6, "--out", tmp_path / "again", "--style", "lava", "--seed", 3)
    assert (tmp_path / "again" / "00004.png").read_bytes() == (out / "00004.png").read_bytes()
    # the paper's regime: held-out variants of pretraining styles, by their split
    code, _, _ = cli("world", "--n", 8, "--out", tmp_path / "v", "--split", "heldout_variant")
    rows = [json.loads(x) for x in (tmp_path / "v" / "metadata.jsonl").read_text().splitlines()]
    assert code == 0 and {r["style"] for r in rows} <= set(world.HELDOUT_VARIANTS)
    assert {r["split"] for r in rows} == {"heldout_variant"}


def test_world_bad_input_exits_2_and_writes_nothing(cli, tmp_path):
    out = tmp_path / "w"
    code, _, err = cli("world", "--n", 0, "--out", out)
    assert code == 2 and "--n" in err and not out.exists()
    code, _, err = cli("world", "--n", 2, "--out", out, "--style", "vaporwave")
    assert code == 2 and "neon_glow" in err and not out.exists()
    code, _, err = cli("world", "--n", 2, "--out", out, "--content", "dragon")
    assert code == 2 and "fish" in err and not out.exists()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = cli("world", "--n", 2, "--out", blocker / "sub")
    assert code == 2 and "cannot write" in err
    assert blocker.read_text() == "x"
    assert list(tmp_path.iterdir()) == [blocker]  # no stray temp folders


def test_every_command_has_help_with_an_example(cli):
    from typer.main import get_command

    from styledrop.cli.common import app
    code, out, _ = cli("--help")
    assert code == 0 and "Usage" in out
    root, seen = get_command(app), 0
    for name, cmd in root.commands.items():
        for sub, leaf in getattr(cmd, "commands", {name: cmd}).items():
            args = [name, sub, "--help"] if sub != name else [name, "--help"]
            code, out, _ = cli(*args)
            assert code == 0 and "Usage" in out, args
            assert "Example: styledrop" in " ".join(out.split()) or "Example: nohup styledrop" in " ".join(
                out.split()), args
            seen += 1
    assert seen >= 20  # every command and subcommand was checked


def test_demo_without_a_base_shows_the_world(cli, tmp_path, monkeypatch):
    import styledrop.muse.base as base_mod
    monkeypatch.setattr(base_mod, "DEFAULT_BASE", tmp_path / "no_base")
    code, _, err = cli("demo", "--out", tmp_path / "demo")
    assert code == 0 and "styledrop pretrain" in err
    assert (tmp_path / "demo" / "world" / "grid.png").is_file()
