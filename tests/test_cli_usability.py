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


def test_inspect_labels_depthwise_and_grouped_convs_and_says_the_layout():
    from microq.onnx_import.inspect import format_table, inspect_onnx

    rep = inspect_onnx(REPO / "python" / "microq" / "assets" / "digits_cnn.onnx")
    assert [r.op for r in rep.rows][:3] == ["Conv2D", "DepthwiseConv2D", "Conv2D"]
    text = format_table(rep)
    assert "NCHW" in text.splitlines()[1] and "NHWC" in text.splitlines()[1]
    rep = inspect_onnx(REPO / "tests" / "models" / "group_net.dynamo.onnx")
    assert [r.op for r in rep.rows][:3] == ["Conv2D (groups=2)", "DepthwiseConv2D", "Conv2D"]


def test_inspect_reads_an_int8_tflite_model(tmp_path):
    from conftest import MODELS, require
    from microq import api
    from microq.onnx_import.inspect import format_table

    path = require(MODELS / "tflite" / "kws_ref_model.tflite", "int8 TFLite model kws01")
    rep = api.inspect(path).report
    assert not rep.unsupported and rep.quantized
    assert rep.inputs == {"input_1": (1, 49, 10, 1)}
    kernels = [r.op for r in rep.rows]
    assert kernels.count("depthwise_conv2d") == 4 and kernels[-1] == "softmax"
    # inspect counts MACs without generating code: the same count as compile's summary
    compiled = api.compile_model(path, None, tmp_path / "kws", name="kws")
    assert rep.total_macs == compiled.summary_json()["macs"] > 2_000_000
    assert "TFLite tensors" in format_table(rep)


def test_compare_table_states_its_criterion_ties_and_stays_narrow(tmp_path):
    from microq import api
    from microq.report import POOR_DB, WORST, short_name

    assets = REPO / "python" / "microq" / "assets"
    api.compile_model(assets / "digits_cnn.onnx", assets / "digits_calib.npz", tmp_path / "d",
                      name="d")
    rep = api.compare(assets / "digits_cnn.onnx", tmp_path / "d", assets / "digits_test.npz")
    text = rep.table()
    assert max(len(line) for line in text.splitlines()) <= 120, text
    assert f"marked: the {WORST} lowest SQNR" in text and f"below {POOR_DB:g} dB" in text
    assert text.count("<- lowest") == WORST
    poor = [r for r in rep.layers if r.worst and r.isolated.sqnr_db < POOR_DB]
    assert text.count("<- lowest, poor") == len(poor)
    # ties: counted among the samples whose top-1 differs, and said in the table
    n_diff = rep.top1_disagree["probs"]
    assert n_diff == round((1 - rep.top1_agreement["probs"]) * rep.samples)
    assert 0 <= rep.top1_ties["probs"] <= n_diff
    if n_diff:
        assert f"of {n_diff} differing are int8 ties" in text
    assert short_name("a" * 40, 10) == "aaaa..aaaa" and short_name("abc") == "abc"
