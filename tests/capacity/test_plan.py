"""docs/capacity.md's tables are what `python -m tools.capacity plan` computes from
docs/capacity/inputs.json (a benchmark run, a measurement, the stated assumptions): a change of
any of them without `make capacity` leaves the document stale, and this fails."""

from __future__ import annotations

import json
from pathlib import Path

from tools.capacity.plan import BEGIN, END, Inputs, chain, instances, render, write

ROOT = Path(__file__).resolve().parents[2]
INPUTS = ROOT / "docs" / "capacity" / "inputs.json"
DOC = ROOT / "docs" / "capacity.md"


def test_the_capacity_document_holds_the_tables_its_inputs_give() -> None:
    assert write(INPUTS, DOC, check=True), "docs/capacity.md is stale: run `make capacity`"


def test_a_hand_edited_figure_in_the_generated_tables_is_found(tmp_path: Path) -> None:
    text = DOC.read_text()
    start, end = text.index(BEGIN), text.index(END)
    block = text[start:end]
    edited = block.replace("stores |", "stores (edited) |", 1)
    assert edited != block
    doc = tmp_path / "capacity.md"
    doc.write_text(text[:start] + edited + text[end:])
    assert not write(INPUTS, doc, check=True)


def test_twice_the_sales_per_store_need_twice_the_busy_cores() -> None:
    inputs = Inputs.load(INPUTS)
    doubled = Inputs(
        inputs.root, json.loads(json.dumps(inputs.raw)), inputs.bench, inputs.step, inputs.measured
    )
    doubled.raw["assumptions"]["sales_per_store_peak_hour"] *= 2
    base = instances(inputs, chain(inputs, 500))
    more = instances(doubled, chain(doubled, 500))
    for service, (cores, _) in base.items():
        assert abs(more[service][0] - 2 * cores) < 1e-9
    assert render(doubled) != render(inputs)
