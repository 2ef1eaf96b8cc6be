"""Starting, readiness and stopping by PID, with small stand-in processes (no infra)."""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
from pathlib import Path

import pytest

from devstack.errors import DevstackError
from devstack.procs import (
    PidInfo,
    pid_alive,
    read_pid_file,
    spawn,
    stop_pid_file,
    tail,
    write_pid_file,
)
from devstack.services import SERVICES, ServicePorts, start_services
from devstack.stack import pid_files, run_status, stop_run

FAKE_SERVICE = textwrap.dedent(
    """
    import http.server, json, os, sys
    name = os.path.basename(__file__)[:-3]
    prefix = {PREFIXES}[name]
    with open(os.path.join(os.environ["FAKE_OUT"], name + ".json"), "w") as fh:
        json.dump(dict(os.environ), fh)
    if os.environ.get("FAKE_FAIL") == name:
        print(name + " cannot start: boom", flush=True)
        sys.exit(3)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health/ready" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    port = int(os.environ[prefix + "PORT"])
    http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
    """
)


@pytest.fixture
def fake_modules(tmp_path: Path) -> Path:
    """Stand-ins for the service modules, first on PYTHONPATH."""
    folder = tmp_path / "fake"
    folder.mkdir()
    prefixes = {s.module: s.prefix for s in SERVICES}
    for service in SERVICES:
        code = FAKE_SERVICE.replace("{PREFIXES}", repr(prefixes))
        (folder / f"{service.module}.py").write_text(code)
    return folder


def fake_env(fake_modules: Path, out: Path, **extra: str) -> dict[str, str]:
    out.mkdir(exist_ok=True)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(fake_modules),
        "FAKE_OUT": str(out),
        "OVERDUE_SCAN_INTERVAL_SECONDS": "2",
        **extra,
    }


def test_spawn_writes_pid_file_and_stop_by_pid(tmp_path: Path) -> None:
    proc = spawn(
        "sleeper",
        [sys.executable, "-c", "import time; print('hello', flush=True); time.sleep(600)"],
        pid_file=tmp_path / "pids" / "sleeper.pid",
        log_path=tmp_path / "logs" / "sleeper.log",
    )
    info = read_pid_file(proc.pid_file)
    assert info is not None and info.pid == proc.pid and info.start_time is not None
    assert proc.alive()
    proc.stop(timeout=10)
    assert not pid_alive(proc.pid)
    assert not proc.pid_file.exists()


def test_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(600)"
    )
    proc = spawn(
        "stubborn",
        [sys.executable, "-c", code],
        pid_file=tmp_path / "stubborn.pid",
        log_path=tmp_path / "stubborn.log",
    )
    for _ in range(100):
        if "ready" in tail(proc.log_path):
            break
        import time

        time.sleep(0.05)
    proc.stop(timeout=0.5)
    assert not pid_alive(proc.pid)


def test_a_reused_pid_is_never_signalled(tmp_path: Path) -> None:
    # A pid file naming our own PID with another start time: stale, so left alone.
    pid_file = tmp_path / "stale.pid"
    write_pid_file(pid_file, PidInfo(name="stale", pid=os.getpid(), start_time=1))
    assert stop_pid_file(pid_file) is False
    assert not pid_file.exists()
    assert pid_alive(os.getpid())


def test_start_services_env_readiness_and_stop(tmp_path: Path, fake_modules: Path) -> None:
    ports = ServicePorts.free()
    out = tmp_path / "out"
    services = start_services(
        tmp_path / "run",
        kafka_bootstrap_servers="127.0.0.1:1",
        database_url="postgresql://u:p@127.0.0.1:2/postgres",
        ports=ports,
        operator_token="op-token",
        base_env=fake_env(fake_modules, out),
        ready_timeout=30,
    )
    with services:
        assert set(services.processes) == {s.name for s in SERVICES}
        assert services.gateway_url == f"http://127.0.0.1:{ports.gateway}"
        assert services.backoffice_url == f"http://127.0.0.1:{ports.backoffice}"
        office_env = json.loads((out / "backoffice.json").read_text())
        assert office_env["BACKOFFICE_GATEWAY_URL"] == services.gateway_url
        credit_env = json.loads((out / "credit.json").read_text())
        assert credit_env["CREDIT_PORT"] == str(ports.credit)
        assert credit_env["CREDIT_OVERDUE_SCAN_INTERVAL_SECONDS"] == "2"
        assert credit_env["OPERATOR_TOKEN"] == "op-token"
        assert credit_env["GATEWAY_REPORTING_URL"] == f"http://127.0.0.1:{ports.reporting}"
        status = run_status("run", run_root=tmp_path)
        assert all(p["alive"] for p in status["processes"].values())
        assert len(pid_files(tmp_path / "run")) == len(SERVICES)
        pids = [p.pid for p in services.processes.values()]
    assert not any(pid_alive(pid) for pid in pids)
    assert pid_files(tmp_path / "run") == []


def test_a_service_that_dies_fails_with_its_log(tmp_path: Path, fake_modules: Path) -> None:
    with pytest.raises(DevstackError, match="boom") as caught:
        start_services(
            tmp_path / "run",
            kafka_bootstrap_servers="127.0.0.1:1",
            database_url="postgresql://u:p@127.0.0.1:2/postgres",
            ports=ServicePorts.free(),
            operator_token="t",
            base_env=fake_env(fake_modules, tmp_path / "out", FAKE_FAIL="notifier"),
            ready_timeout=30,
        )
    assert "notifier" in str(caught.value)
    assert pid_files(tmp_path / "run") == []  # the others were stopped


def test_stop_run_stops_what_the_pid_files_name(tmp_path: Path, fake_modules: Path) -> None:
    services = start_services(
        tmp_path / "run",
        kafka_bootstrap_servers="127.0.0.1:1",
        database_url="postgresql://u:p@127.0.0.1:2/postgres",
        ports=ServicePorts.free(),
        operator_token="t",
        base_env=fake_env(fake_modules, tmp_path / "out"),
        ready_timeout=30,
    )
    pids = [p.pid for p in services.processes.values()]
    stopped = stop_run("run", run_root=tmp_path, purge=True)
    assert sorted(stopped) == sorted(f"svc-{s.name}" for s in SERVICES)
    assert not any(pid_alive(pid) for pid in pids)
    assert not (tmp_path / "run").exists()
    services.stop()  # reaps; nothing left to signal


def test_ports_in_use_are_refused_up_front(tmp_path: Path, fake_modules: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        ports = ServicePorts.free()
        ports = ServicePorts(
            gateway=busy.getsockname()[1],
            credit=ports.credit,
            loyalty=ports.loyalty,
            reporting=ports.reporting,
            notifier=ports.notifier,
            backoffice=ports.backoffice,
        )
        with pytest.raises(DevstackError, match="GATEWAY_PORT"):
            start_services(
                tmp_path / "run",
                kafka_bootstrap_servers="x:1",
                database_url="postgresql://x",
                ports=ports,
                base_env=fake_env(fake_modules, tmp_path / "out"),
            )


def test_signal_numbers_survive_the_pid_file(tmp_path: Path) -> None:
    path = tmp_path / "pg.pid"
    write_pid_file(path, PidInfo("pg", 123, 4, stop_signal=int(signal.SIGINT), argv=["x"]))
    assert read_pid_file(path) == PidInfo("pg", 123, 4, int(signal.SIGINT), 30.0, ["x"])


def test_purge_can_keep_the_logs(tmp_path: Path) -> None:
    from devstack.stack import purge_run_dir

    rdir = tmp_path / "run"
    for sub in ("logs", "kafka/data", "pids"):
        (rdir / sub).mkdir(parents=True)
    (rdir / "logs" / "kafka-server.log").write_text("x")
    (rdir / "stack.json").write_text("{}")
    purge_run_dir(rdir, keep_logs=True)
    assert sorted(p.name for p in rdir.iterdir()) == ["logs"]
    assert (rdir / "logs" / "kafka-server.log").exists()
    purge_run_dir(rdir)
    assert not rdir.exists()


def test_one_service_is_killed_restarted_and_doubled_by_pid(
    tmp_path: Path, fake_modules: Path
) -> None:
    from devstack.ports import free_port
    from devstack.services import http_status

    ports = ServicePorts.free()
    services = start_services(
        tmp_path / "run",
        kafka_bootstrap_servers="127.0.0.1:1",
        database_url="postgresql://u:p@127.0.0.1:2/postgres",
        ports=ports,
        operator_token="t",
        base_env=fake_env(fake_modules, tmp_path / "out"),
        ready_timeout=30,
    )
    with services:
        first = services.processes["credit"].pid
        assert services.kill("credit") == first
        assert not pid_alive(first)
        assert services.processes["gateway"].alive()  # only that one
        services.start_instance("credit", ready_timeout=30)
        second = services.processes["credit"].pid
        assert second != first and pid_alive(second)
        extra_port = free_port()
        services.start_instance("credit", instance="credit-2", port=extra_port, ready_timeout=30)
        assert http_status(f"http://127.0.0.1:{extra_port}/health/ready") == 200
        assert (tmp_path / "run" / "pids" / "svc-credit-2.pid").exists()
        services.restart("credit-2", ready_timeout=30)
        pids = [p.pid for p in services.processes.values()]
        assert len(pids) == len(SERVICES) + 1  # the extra credit instance
    assert not any(pid_alive(pid) for pid in pids)
    assert pid_files(tmp_path / "run") == []


def test_kafka_nodes_stop_after_every_service_instance_and_before_postgres(
    tmp_path: Path,
) -> None:
    pids = tmp_path / "run" / "pids"
    pids.mkdir(parents=True)
    for stem in (
        "postgres",
        "kafka-2",
        "svc-credit-2",
        "kafka-1",
        "svc-gateway",
        "svc-credit",
        "kafka-3",
    ):
        (pids / f"{stem}.pid").write_text("{}")
    order = [p.stem for p in pid_files(tmp_path / "run")]
    assert order == [
        "svc-credit",
        "svc-gateway",
        "svc-credit-2",
        "kafka-1",
        "kafka-2",
        "kafka-3",
        "postgres",
    ]
