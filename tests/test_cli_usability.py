"""Small CLI fixes of issue 10: run -o creates a missing parent, path options are typed as paths,
`microq cache info|clean`."""

from __future__ import annotations

import numpy as np

from conftest import REPO


def test_run_creates_a_missing_output_parent(tmp_path):
    """`run -o a/b/pred.npz` creates a/b, as `compile -o` does (it refused before)."""
    from click.testing import CliRunner

    from microq import api
    from microq.cli import main as cli

    assets = REPO / "python" / "microq" / "assets"
    api.compile_model(assets / "digits_cnn.onnx", assets / "digits_calib.npz", tmp_path / "d",
                      name="d")
    out = tmp_path / "new" / "dir" / "pred.npz"
    r = CliRunner().invoke(cli, ["run", str(tmp_path / "d"), "--input",
                                 str(assets / "digits_test.npz"), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert np.load(out)["probs"].shape == (360, 10)


def test_path_options_are_typed_as_paths():
    from click.testing import CliRunner

    from microq.cli import main as cli

    for cmd, opts in (("compile", ("--calib FILE", "--out PATH")),
                      ("run", ("--input FILE", "--out FILE")), ("compare", ("--data FILE",))):
        text = CliRunner().invoke(cli, [cmd, "--help"]).output
        for opt in opts:
            assert opt in text, (cmd, opt)


def test_cache_clean_empties_the_cache(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from microq.cli import main as cli

    monkeypatch.setenv("MICROQ_CACHE", str(tmp_path / "c"))
    (tmp_path / "c" / "mcu" / "x").mkdir(parents=True)
    (tmp_path / "c" / "mcu" / "x" / "prog.elf").write_bytes(b"\0" * 1000)
    (tmp_path / "c" / "_mq_model.so").write_bytes(b"\0" * 24)
    r = CliRunner().invoke(cli, ["cache", "info"])
    assert r.exit_code == 0 and "2 entries, 1,024 B" in r.output
    r = CliRunner().invoke(cli, ["cache", "clean"])
    assert r.exit_code == 0 and "removed 2 entries (1,024 B)" in r.output
    assert (tmp_path / "c").is_dir() and not list((tmp_path / "c").iterdir())
