"""docs/benchmarks.md shows each `bench.shape` run: per shape and rate, CPU per sale by
process, answers, latency and batches; a file from before `--shapes` reads as one serial run."""

from __future__ import annotations

from typing import Any

from bench.render import shape_section


def _step(rate: float) -> dict[str, Any]:
    return {
        "rate": rate,
        "achieved": rate - 0.2,
        "sent": 300,
        "statuses": {"201": 299, "202": 1},
        "p50_ms": 12.5,
        "p99_ms": 40.0,
        "cpu_ms_per_sale": {"edge": 2.5, "credit": 3.0, "kafka": 1.5},
        "total_cpu_ms_per_sale": 7.0,
        "records_per_batch": {"edge": 1.0, "credit": 1.5},
        "machine_cpu_percent": 120.0,
    }


def test_each_shape_of_a_run_has_its_table() -> None:
    run = {
        "label": "x",
        "started_at": "2026-12-06 18:00:00 UTC",
        "command": "run --shapes serial,parallel",
        "runs": [
            {"shape": "serial", "seconds": 15.0, "steps": [_step(50)]},
            {"shape": "parallel", "seconds": 15.0, "steps": [_step(50), _step(100)]},
        ],
    }
    text = "\n".join(shape_section(run))
    assert "## Shape floor: `x` (2026-12-06 18:00:00 UTC)" in text
    assert "python -m bench.shape run --shapes serial,parallel" in text
    assert text.index("Shape `serial`") < text.index("Shape `parallel`")
    assert "| edge | credit | kafka | all |" in text
    assert (
        "| 100 | 99.8 | 299 of 300 | 2.5 | 3 | 1.5 | 7 | 12.5 / 40 | edge 1, credit 1.5 | 120 |"
        in text
    )


def test_a_run_from_before_shapes_reads_as_one_serial_run() -> None:
    old = {"steps": [_step(50)], "seconds": 15.0, "measured_at": "2026-12-06 18:13:56 UTC"}
    text = "\n".join(shape_section(old))
    assert "(2026-12-06 18:13:56 UTC)" in text
    assert "Shape `serial`" in text
    assert text.count("| 50 | 49.8 |") == 1
