"""Run owners: a live process is recognised, a finished or garbled one is not."""

from __future__ import annotations

import subprocess
import sys

from synarrow.processes import owner_alive, owner_token


def test_this_process_is_alive_and_a_finished_one_is_not() -> None:
    assert owner_alive(owner_token())
    out = subprocess.run(
        [sys.executable, "-c", "from synarrow.processes import owner_token; print(owner_token())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert not owner_alive(out)


def test_a_reused_pid_with_another_start_time_is_not_the_owner() -> None:
    pid = owner_token().split(":")[0]
    assert not owner_alive(f"{pid}:1")  # this pid, but a process started at tick 1


def test_garbled_tokens_are_dead() -> None:
    for token in (None, 5, "", "x:y", "-3:", "0:", ":12"):
        assert not owner_alive(token)
