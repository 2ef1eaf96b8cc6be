"""Processes started by devstack: pid files, liveness, stopping by PID, log tails, progress.

Every process is started in its own session (so a terminal's Ctrl-C does not reach it and it
outlives `python -m devstack up`), writes a pid file in its run dir, and is stopped by that
PID only: the stop signal (SIGTERM, or SIGINT for PostgreSQL's fast shutdown), a wait, then
SIGKILL. A pid file also records the process start time, so a PID reused by the OS for some
unrelated process is never signalled.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any, Self

Progress = Callable[[str], None]


class StoppedOnExit:
    """What devstack starts (a server, a cluster, the services, a whole stack) is stopped at
    the end of a `with` block, also when the block raises: the subclass's `stop()`."""

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def stderr_progress(message: str) -> None:
    """Default progress sink: one line on stderr (stdout stays clean for `eval`)."""
    print(f"[devstack] {message}", file=sys.stderr, flush=True)


def no_progress(message: str) -> None:
    """A progress sink that prints nothing."""


@contextmanager
def ticking(progress: Progress, message: str, every: float = 10.0) -> Iterator[None]:
    """Print `message`, then `... still <message> (Ns)` every `every` seconds until done."""
    progress(message)
    done = threading.Event()
    started = time.monotonic()

    def tick() -> None:
        while not done.wait(every):
            progress(f"... {message} ({time.monotonic() - started:.0f}s)")

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a text file ('' when it does not exist)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def format_tail(label: str, path: Path, lines: int = 40) -> str:
    text = tail(path, lines)
    return f"--- last {lines} lines of {label} ({path}) ---\n{text or '(empty)'}\n--- end ---"


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (index 0 is the state)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def process_start_time(pid: int) -> int | None:
    """The kernel's start time of a process (clock ticks since boot), None if unknown."""
    fields = _proc_stat(pid)
    if fields is None or len(fields) < 20:
        return None
    return int(fields[19])


def pid_alive(pid: int, start_time: int | None = None) -> bool:
    """True while `pid` runs (a zombie counts as gone); with `start_time`, only if it is still
    the same process."""
    if pid <= 0:
        return False
    fields = _proc_stat(pid)
    if fields is not None:
        if fields[0] in ("Z", "X"):
            return False
        return start_time is None or int(fields[19]) == start_time
    if Path("/proc/self/stat").exists():  # Linux, and the pid has no /proc entry: gone
        return False
    try:  # no /proc (not Linux): fall back to signal 0
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class PidInfo:
    """What a pid file holds."""

    name: str
    pid: int
    start_time: int | None
    stop_signal: int = int(signal.SIGTERM)
    stop_timeout: float = 30.0
    argv: list[str] = field(default_factory=list)

    def alive(self) -> bool:
        return pid_alive(self.pid, self.start_time)


def write_pid_file(path: Path, info: PidInfo) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info.__dict__, indent=1) + "\n")
    tmp.replace(path)


def read_pid_file(path: Path) -> PidInfo | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return PidInfo(
            name=str(data["name"]),
            pid=int(data["pid"]),
            start_time=None if data.get("start_time") is None else int(data["start_time"]),
            stop_signal=int(data.get("stop_signal", signal.SIGTERM)),
            stop_timeout=float(data.get("stop_timeout", 30.0)),
            argv=[str(a) for a in data.get("argv", [])],
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def user_ids(user: str | None) -> tuple[int | None, int | None, list[int] | None]:
    """(uid, gid, supplementary groups) for running a child as `user` (all None: as we are)."""
    if user is None:
        return None, None, None
    import pwd

    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid, []


def _signal(pid: int, sig: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _pause(popen: subprocess.Popen[bytes] | None) -> None:
    """Wait a moment (reaping our own child as soon as it exits)."""
    if popen is None:
        time.sleep(0.1)
        return
    with suppress(subprocess.TimeoutExpired):
        popen.wait(timeout=0.1)


def signal_pid(info: PidInfo, sig: int) -> bool:
    """Send `sig` to the process a pid file names, only if it is still that process (fault
    injection: kill -9, PostgreSQL's SIGQUIT immediate shutdown). True if it was sent."""
    if not info.alive():
        return False
    _signal(info.pid, sig)
    return True


def _kill_group(pid: int) -> None:
    """SIGKILL the process group that `pid` leads (its session started by us), else the pid."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
            return
    except (ProcessLookupError, PermissionError):
        pass
    _signal(pid, signal.SIGKILL)


def stop_pid(
    info: PidInfo,
    *,
    timeout: float | None = None,
    popen: subprocess.Popen[bytes] | None = None,
    progress: Progress = no_progress,
) -> bool:
    """Stop one process by PID: its stop signal, wait, then SIGKILL. True if it was running."""
    if not info.alive():
        if popen is not None:
            popen.poll()
        return False
    limit = info.stop_timeout if timeout is None else timeout
    progress(f"stopping {info.name} (pid {info.pid})")
    _signal(info.pid, info.stop_signal)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        _pause(popen)
        if not info.alive():
            return True
    progress(f"{info.name} (pid {info.pid}) did not stop within {limit:.0f}s: SIGKILL")
    _kill_group(info.pid)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and info.alive():
        _pause(popen)
    return True


def stop_pid_file(path: Path, *, progress: Progress = no_progress) -> bool:
    """Stop the process a pid file names (if it is still that process) and remove the file."""
    info = read_pid_file(path)
    was_running = False
    if info is not None:
        was_running = stop_pid(info, progress=progress)
    path.unlink(missing_ok=True)
    return was_running


@dataclass
class ManagedProcess:
    """A process this Python process started (or found by its pid file)."""

    info: PidInfo
    pid_file: Path
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        return self.info.pid

    @property
    def name(self) -> str:
        return self.info.name

    def alive(self) -> bool:
        if self.popen is not None and self.popen.poll() is not None:
            return False
        return self.info.alive()

    def stop(self, *, timeout: float | None = None, progress: Progress = no_progress) -> None:
        stop_pid(self.info, timeout=timeout, popen=self.popen, progress=progress)
        self.pid_file.unlink(missing_ok=True)
        _forget(self)


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    pid_file: Path,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
    stop_signal: int = int(signal.SIGTERM),
    stop_timeout: float = 30.0,
    stop_at_exit: bool = True,
) -> ManagedProcess:
    """Start `argv` in a new session with stdout+stderr appended to `log_path`; write its pid
    file. With `stop_at_exit`, it is stopped when this Python process exits (atexit)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    uid, gid, groups = user_ids(user)
    log: IO[bytes]
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            user=uid,
            group=gid,
            extra_groups=groups,
        )
    info = PidInfo(
        name=name,
        pid=popen.pid,
        start_time=process_start_time(popen.pid),
        stop_signal=int(stop_signal),
        stop_timeout=stop_timeout,
        argv=list(argv),
    )
    write_pid_file(pid_file, info)
    proc = ManagedProcess(info=info, pid_file=pid_file, log_path=log_path, popen=popen)
    if stop_at_exit:
        _remember(proc)
    return proc


# -- stop at interpreter exit ------------------------------------------------------------------

_LIVE: list[ManagedProcess] = []
_LIVE_LOCK = threading.Lock()


def _remember(proc: ManagedProcess) -> None:
    with _LIVE_LOCK:
        _LIVE.append(proc)


def _forget(proc: ManagedProcess) -> None:
    with _LIVE_LOCK:
        if proc in _LIVE:
            _LIVE.remove(proc)


def detach(proc: ManagedProcess) -> None:
    """Let `proc` outlive this Python process (`devstack up`)."""
    _forget(proc)


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds: `finally` blocks run, then `_stop_all_at_exit`


def stop_on_sigterm() -> None:
    """Make SIGTERM end this process as an exit does, so what it started is stopped: Python's
    default for SIGTERM ends it at once, with no `finally` block and no atexit hook run, which
    would leave its Kafka, PostgreSQL and services running. For a command's main thread."""
    signal.signal(signal.SIGTERM, _raise_on_sigterm)


@atexit.register
def _stop_all_at_exit() -> None:
    with _LIVE_LOCK:
        procs = list(reversed(_LIVE))
    for proc in procs:
        try:
            proc.stop()
        except Exception as exc:  # pragma: no cover - best effort at exit
            print(f"[devstack] could not stop {proc.name}: {exc}", file=sys.stderr)


def run_checked(
    argv: Sequence[str],
    *,
    what: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
    timeout: float = 300,
    input_text: str | None = None,
) -> str:
    """Run a short command to completion; raise DevstackError with its output on failure."""
    from devstack.errors import DevstackError

    uid, gid, groups = user_ids(user)
    try:
        done = subprocess.run(
            list(argv),
            input=input_text,
            capture_output=True,
            text=True,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            user=uid,
            group=gid,
            extra_groups=groups,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise DevstackError(f"{what} timed out after {timeout:.0f}s: {' '.join(argv)}") from exc
    except OSError as exc:
        raise DevstackError(f"{what} could not run ({exc}): {' '.join(argv)}") from exc
    if done.returncode != 0:
        raise DevstackError(
            f"{what} failed (exit {done.returncode}): {' '.join(argv)}\n"
            f"{done.stdout[-4000:]}{done.stderr[-4000:]}"
        )
    return done.stdout
