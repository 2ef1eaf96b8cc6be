"""What the bench says about a py-spy profile: each busy sample in one category by its
innermost known layer, waiting samples set apart, and a flame graph of the busy ones."""

from __future__ import annotations

from pathlib import Path

from bench.profiles import Profile, flamegraph_svg

SITE = "/venv/lib/python3.11/site-packages"
HANDLER = "handle_command (/repo/services/credit/src/credit/service_layer/handlers.py:120)"
EXECUTE = f"Session.execute ({SITE}/sqlalchemy/orm/session.py:2300)"
COMPILE = f"SQLCompiler.visit_select ({SITE}/sqlalchemy/sql/compiler.py:4800)"
ASYNCPG = f"PreparedStatement.__do_execute ({SITE}/asyncpg/prepared_stmt.py:280)"
LOG = "Logger.info (/usr/lib/python3.11/logging/__init__.py:1480)"
FORMAT = "JsonFormatter.format (/repo/libs/servicekit/src/servicekit/logging.py:30)"
RUNNER = "Runner.run (/usr/lib/python3.11/asyncio/runners.py:118)"
MAIN = "<module> (/repo/services/credit/src/credit/__main__.py:5)"


def _write(tmp_path: Path, lines: list[tuple[list[str], int]]) -> Path:
    path = tmp_path / "credit.txt"
    path.write_text("".join(";".join(stack) + f" {n}\n" for stack, n in lines))
    return path


def test_a_sample_counts_for_the_innermost_known_layer_and_waiting_samples_are_left_out(
    tmp_path: Path,
) -> None:
    path = _write(
        tmp_path,
        [
            ([MAIN, RUNNER, HANDLER, EXECUTE, COMPILE], 30),  # statement building under the ORM
            ([MAIN, RUNNER, HANDLER, EXECUTE, ASYNCPG], 20),  # asyncpg under SQLAlchemy
            ([MAIN, RUNNER, HANDLER, LOG, FORMAT], 10),  # our formatter, called by logging
            ([MAIN, RUNNER, HANDLER], 40),  # the handler's own code
            ([MAIN, RUNNER], 900),  # uvloop waiting in C: idle
        ],
    )
    prof = Profile.read(path)
    assert (prof.samples, prof.idle) == (100, 900)
    assert prof.categories() == {
        "logging": 10.0,
        "asyncpg": 20.0,
        "SQLAlchemy statement building": 30.0,
        "service code": 40.0,
    }


def test_the_flame_graph_has_a_box_per_frame_and_the_legend_of_the_categories(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path, [([MAIN, RUNNER, HANDLER, EXECUTE, COMPILE], 3), ([MAIN, RUNNER], 5)])
    svg = flamegraph_svg(Profile.read(path), "credit at 50 req/s")
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert "SQLCompiler.visit_select (sql/compiler.py): 100.00% (3 samples)" in svg
    assert "SQLAlchemy statement building 100%" in svg
    assert "all: 100.00% (3 samples)" in svg  # only busy samples are drawn


def test_frames_named_as_py_spy_names_them_count_for_the_service_that_runs_them(
    tmp_path: Path,
) -> None:
    # py-spy names a file by the import path it was found under, without "/src/": the
    # service's own work (and the stdlib it calls) must not count for the framework above it
    faststream = "HandlerCallWrapper.call_wrapped (faststream/_internal/endpoint/call_wrapper.py:9)"
    consumer = "Consumer._process_batch (servicekit/consumer.py:782)"
    handler = "execute (credit/service_layer/handlers.py:120)"
    uuid_str = "UUID.__str__ (uuid.py:283)"
    route = "create_sale (pos_gateway/entrypoints/api/routes.py:479)"
    starlette = "Router.__call__ (starlette/routing.py:700)"
    path = _write(
        tmp_path,
        [
            ([MAIN, faststream, consumer, handler, uuid_str], 30),
            ([MAIN, faststream, consumer], 10),
            ([MAIN, starlette, route], 20),
            ([MAIN, faststream], 40),  # FastStream's own work
        ],
    )
    assert Profile.read(path).categories() == {
        "FastStream per message": 40.0,
        "service code": 60.0,
    }
