"""The recovery figures of the pipeline benchmark (kill -9 of a consumer under load), from
lag samples: when the restarted process consumes again, when its backlog is gone."""

from __future__ import annotations

from bench.recovery import Sample, recovery_figures


def _samples(points: list[tuple[float, int, int]]) -> list[Sample]:
    return [Sample(at, lag, committed) for at, lag, committed in points]


def test_resumed_is_the_first_commit_of_the_new_process_and_backlog_gone_the_steady_lag() -> None:
    samples = _samples(
        [
            (8.0, 3, 100),
            (9.0, 5, 120),
            (9.9, 2, 140),  # steady: lag at most 5
            (10.05, 4, 150),  # the old process committed once more while being killed
            (10.5, 20, 150),
            (12.0, 40, 150),
            (13.5, 60, 150),  # dead, then starting
            (14.0, 55, 160),  # first commit of the new process
            (16.0, 30, 200),
            (18.0, 9, 240),
            (20.0, 4, 280),
            (21.0, 0, 290),
        ]
    )
    figures = recovery_figures(
        samples, kill_at=10.0, killed_at=10.1, restart_at=10.6, ready_at=13.0
    )
    assert figures["steady_lag_max"] == 5
    assert figures["peak_lag"] == 60
    assert figures["resumed_after_kill_s"] == 4.0
    assert figures["resumed_after_restart_s"] == 3.4
    assert figures["backlog_gone_after_kill_s"] == 10.0
    assert figures["backlog_gone_after_restart_s"] == 9.4
    assert figures["ready_after_restart_s"] == 2.4


def test_a_commit_of_the_killed_process_is_not_taken_for_the_restarted_one() -> None:
    # the last commit before the restart (150 at 10.05) is the reference, not the last
    # sample before the kill (140): the lag falling at 10.5 is not a resumption
    samples = _samples([(9.0, 2, 140), (10.05, 1, 150), (10.5, 0, 150), (11.0, 3, 150)])
    figures = recovery_figures(
        samples, kill_at=10.0, killed_at=10.1, restart_at=10.6, ready_at=12.0
    )
    assert figures["resumed_after_kill_s"] is None
    assert figures["backlog_gone_after_kill_s"] is None


def test_backlog_not_gone_within_the_window_is_reported_as_none() -> None:
    samples = _samples([(9.0, 1, 10), (11.0, 50, 10), (12.0, 45, 20), (13.0, 40, 30)])
    figures = recovery_figures(
        samples, kill_at=10.0, killed_at=10.1, restart_at=10.5, ready_at=11.5
    )
    assert figures["resumed_after_kill_s"] == 2.0
    assert figures["backlog_gone_after_kill_s"] is None
