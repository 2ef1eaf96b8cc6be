"""The floor app of every bench run: a minimal FastAPI + asyncpg app driven at saturation
answers sales 201 and reports its own CPU per request."""

from __future__ import annotations

from bench.floor import measure


async def test_the_floor_app_answers_201_and_reports_its_cpu_per_request(
    database_server_url: str,
) -> None:
    figures = await measure(database_server_url, seconds=2.0, warmup_seconds=0.5, connections=4)
    assert "error" not in figures, figures
    assert set(figures["statuses"]) == {"201"}
    assert figures["requests_per_second"] > 0
    assert 0 < figures["app_cpu_ms_per_request"] < 100
