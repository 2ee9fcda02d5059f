"""`--board`: the model against real parts' flash and RAM (issue 10), and by how many bytes it
does not fit. Hand-written folders give exact static sizes; the demo checks every board."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from microq.cli import BOARDS as CLI_BOARDS
from microq.cli import main as cli
from microq.runtime.boards import BOARDS, fit_report
from test_mcu import COPY, TOOLS, fake_model, need_tools

KIB = 1024


def test_board_table_is_the_datasheet_figures():
    want = {  # part: (flash, RAM) in bytes, from the manufacturers' datasheets
        "stm32f411": (512 * KIB, 128 * KIB), "stm32l4r5": (2048 * KIB, 640 * KIB),
        "nrf52840": (1024 * KIB, 256 * KIB), "rp2040": (2048 * KIB, 264 * KIB),
        "esp32c3": (4096 * KIB, 384 * KIB), "microbit": (512 * KIB, 128 * KIB),
        "microbit-v1": (256 * KIB, 16 * KIB),
    }
    assert {k: (b.flash, b.ram) for k, b in BOARDS.items()} == want
    assert tuple(BOARDS) == CLI_BOARDS


@pytest.fixture(scope="module")
def demo(compiled_demo):
    return compiled_demo  # shared (conftest): read-only


@pytest.mark.parametrize("key", [k for k in BOARDS if BOARDS[k].core != "rv32imc"])
def test_demo_fits_every_arm_board(demo, key):
    need_tools(*TOOLS)
    rep = fit_report(demo, key)
    assert rep["fits"] and rep["flash"]["over"] == rep["ram"]["over"] == 0
    meta = json.loads((demo / "digits.json").read_text())
    assert rep["flash"]["weights"] == meta["weight_bytes"]
    assert rep["ram"]["arena"] == meta["arena_size"]
    assert 0 < rep["ram"]["stack"] < 4096
    assert rep["flash"]["total"] == sum(rep["flash"][k] for k in
                                        ("runtime_code", "model_code", "weights"))


def test_demo_on_esp32c3(demo):
    need_tools("riscv64-unknown-elf-gcc")
    rep = fit_report(demo, "esp32c3")
    assert rep["fits"] and "estimated" in rep["stack_note"]
    assert rep["ram"]["stack"] == fit_report(demo, "stm32f411")["ram"]["stack"]  # the M4's
    assert rep["flash"]["weights"] == json.loads((demo / "digits.json").read_text())["weight_bytes"]


def test_ram_overflow_is_reported_in_bytes(tmp_path):
    need_tools(*TOOLS)
    n = 200_000  # more than the STM32F411's 128 KiB, less than the emulated board's 4 MiB
    folder = fake_model(tmp_path / "ram", COPY + "return big[1];",
                        f"static int8_t big[{n}];\nint8_t *fake_keep = big;\n")
    rep = fit_report(folder, "stm32f411")
    assert not rep["fits"] and rep["flash"]["over"] == 0
    assert n <= rep["ram"]["arena"] < n + 16
    assert rep["ram"]["over"] == rep["ram"]["total"] - 128 * KIB > n - 128 * KIB
    res = CliRunner().invoke(cli, ["size", str(folder), "--board", "stm32f411"])
    assert res.exit_code == 1
    assert "DOES NOT FIT" in res.output
    assert f"RAM needs {rep['ram']['total']:,} B, {rep['ram']['over']:,} B more than the " \
           f"{128 * KIB:,} B it has" in res.output
    assert fit_report(folder, "stm32l4r5")["fits"]  # 640 KiB


def test_flash_overflow_beyond_the_emulated_board(tmp_path):
    """Too big for the emulated M0 board too: measured from a link with large regions."""
    need_tools(*TOOLS)
    n = 300_000
    folder = fake_model(tmp_path / "flash", COPY + "return table[(inputs[0][0] & 63) + 1];",
                        f"extern const int8_t table[{n}];\nconst int8_t table[{n}] = {{1}};\n")
    rep = fit_report(folder, "microbit-v1")
    assert not rep["fits"] and "estimated" in rep["stack_note"] and rep["ram"]["stack"] > 0
    assert n <= rep["flash"]["model_code"] < n + 512
    assert rep["flash"]["over"] == rep["flash"]["total"] - 256 * KIB
    assert fit_report(folder, "rp2040")["fits"]


def test_target_and_board_names_agree_with_the_runtime():
    """microq.names (what the CLI and api accept, without loading the runtime) lists exactly the
    emulated targets of runtime.mcu and the boards of runtime.boards, in their order."""
    from microq import names
    from microq.runtime import boards, mcu

    assert names.MCU_TARGET_NAMES == tuple(mcu.TARGETS)
    assert names.TARGET_NAMES == ("host", *mcu.TARGETS)
    assert names.BOARD_NAMES == tuple(boards.BOARDS)
