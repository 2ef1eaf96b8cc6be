"""The A/B mode of the pipeline benchmark runs the services of another commit: the code at a
ref exported (no worktree) and put first on the services' PYTHONPATH."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.pipeline import _export, _variants, over_tcp, services_at

from devstack.services import SERVICE_NAMES


def test_the_services_import_the_exported_code_of_the_ref_not_this_checkout(
    tmp_path: Path,
) -> None:
    pythonpath = _export("HEAD", tmp_path / "head")
    first = pythonpath.split(os.pathsep)[0]
    assert first.startswith(str(tmp_path / "head"))
    found = subprocess.run(
        [
            sys.executable,
            "-c",
            "import servicekit, credit; print(servicekit.__file__); print(credit.__file__)",
        ],
        env={**os.environ, "PYTHONPATH": pythonpath},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert all(path.startswith(str(tmp_path / "head")) for path in found), found


def test_a_ref_older_than_a_service_runs_without_it(tmp_path: Path) -> None:
    """e91bebd (issue 14's baseline) has no back office: this checkout's back office would run
    on that ref's libraries and fail to start, so the ref's stack leaves it out."""
    old = tmp_path / "old"
    _export("HEAD", old)
    assert services_at(old) == SERVICE_NAMES
    subprocess.run(["rm", "-r", str(old / "services" / "backoffice")], check=True)
    assert services_at(old) == tuple(n for n in SERVICE_NAMES if n != "backoffice")


def test_the_tcp_variant_drops_the_socket_and_keeps_the_address_and_credentials() -> None:
    url = "postgresql://retail:a%2Fb@127.0.0.1:5555/postgres?host=/run/x%20y/sock&sslmode=disable"
    assert over_tcp(url) == "postgresql://retail:a%2Fb@127.0.0.1:5555/postgres?sslmode=disable"
    assert over_tcp("postgresql://u:p@127.0.0.1:5555/postgres?host=/s") == (
        "postgresql://u:p@127.0.0.1:5555/postgres"
    )


def test_with_refs_the_refs_run_over_tcp_and_this_checkout_through_the_socket(
    tmp_path: Path,
) -> None:
    class _Stack:
        database_url = "postgresql://u:p@127.0.0.1:5555/postgres?host=/s"
        run_dir = tmp_path

    ref, here = _variants(_Stack(), ["HEAD"], database_tcp=True)  # type: ignore[arg-type]
    assert ref.env == {"DATABASE_URL": "postgresql://u:p@127.0.0.1:5555/postgres"}
    assert ref.pythonpath and ref.name.endswith(", over TCP")
    assert (here.env, here.pythonpath) == ({}, None)
    tcp, socket = _variants(_Stack(), [], database_tcp=True)  # type: ignore[arg-type]
    assert (tcp.env, socket.env) == (ref.env, {})


def _step(rate: float, sales: float, cpu: float, kept: bool) -> dict[str, object]:
    return {
        "offered_rps": rate,
        "sales_per_second": sales,
        "stack_cpu_ms_per_request": cpu,
        "kept_up": kept,
        "latency_ms": {"p50": 10.0 * rate, "p99": 20.0 * rate},
    }


def test_a_baseline_run_is_set_beside_this_codes_rate_by_rate() -> None:
    from bench.pipeline import baseline_rows
    from bench.render import _baseline_table

    base = {"steps": [_step(20, 14.6, 82.7, True), _step(50, 37.9, 60.0, False)]}
    this = {"steps": [_step(20, 14.5, 38.3, True), _step(35, 24.5, 29.5, True)]}
    rows = baseline_rows(base, this)
    # only the rates both ran; the baseline stopped at 50, this code ran 35 instead
    assert [r["offered_rps"] for r in rows] == [20]
    assert rows[0]["baseline_stack_cpu_ms_per_request"] == 82.7
    assert rows[0]["this_stack_cpu_ms_per_request"] == 38.3
    table = _baseline_table(
        {
            "baseline": {
                "ref": "e91bebd",
                "label": "x-e91bebd",
                "git_commit": "e91bebd",
                "steps": rows,
            }
        }
    )
    assert "| 20 | 14.6, 82.7, 200 / 400 | 14.5, 38.3, 200 / 400 |" in table
    base["steps"][0]["kept_up"] = False
    rows = baseline_rows(base, this)
    assert (
        "(not kept up)"
        in _baseline_table(
            {"baseline": {**{"ref": "r", "label": "l", "git_commit": "c"}, "steps": rows}}
        )[4]
    )
