"""The Zynq block-design wrapper: Vivado's interface names and attributes, and lint-clean."""

import json
import re

import pytest

from hw.verilator import lint
from hw.zynq import WRAPPER_NAME, write_zynq, zynq_wrapper
from isa import load_config

SMALL = load_config("small")


def test_wrapper_ports_follow_vivado_interface_inference():
    text = zynq_wrapper(SMALL)
    ports = re.findall(r"(input|output) wire (?:\[(\d+):0\] )?(\w+)", text)
    names = {name for _, _, name in ports}
    assert {"aclk", "aresetn", "irq", "m_axi_awaddr", "m_axi_rdata", "s_axi_awaddr",
            "s_axi_rdata"} <= names
    assert not any(name.startswith("s_axil_") for name in names)
    widths = {name: int(msb or 0) + 1 for _, msb, name in ports}
    assert widths["m_axi_wdata"] == SMALL.axi_data_bits and widths["s_axi_wdata"] == 32
    # every bus port is tagged for inference, each bus carries its parameters once
    assert text.count('"xilinx.com:interface:aximm:1.0 m_axi ') == sum(
        name.startswith("m_axi_") for name in names)
    assert text.count("XIL_INTERFACENAME m_axi, PROTOCOL AXI4,") == 1
    assert text.count("XIL_INTERFACENAME s_axi, PROTOCOL AXI4LITE,") == 1
    assert ".rst(~aresetn)" in text and ".irq(irq)" in text


@pytest.mark.slow
def test_wrapper_and_accelerator_lint_clean(tmp_path):
    summary = write_zynq(SMALL, tmp_path)
    assert lint(tmp_path / f"{WRAPPER_NAME}.v", WRAPPER_NAME) == ""
    manifest = json.loads((tmp_path / f"{WRAPPER_NAME}.json").read_text())
    assert manifest["wrapper"] == WRAPPER_NAME and summary["config_id"] == SMALL.config_id_hex
