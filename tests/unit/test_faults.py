"""The failure points tests arm with FIREHOSE_LOADER_FAILPOINTS (plugins/firehose_loader/faults.py)."""

from __future__ import annotations

import pytest

from firehose_loader import faults
from firehose_loader.faults import InjectedFault, failpoint


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(faults.FAILPOINTS_VARIABLE, raising=False)
    faults.reset()
    yield
    faults.reset()


def test_unarmed_points_do_nothing() -> None:
    failpoint("after_copy")


def test_armed_points_raise_every_time_and_others_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(faults.FAILPOINTS_VARIABLE, " after_copy , before_commit:raise ")
    for _ in range(2):
        with pytest.raises(InjectedFault, match="after_copy"):
            failpoint("after_copy")
    with pytest.raises(InjectedFault, match="before_commit"):
        failpoint("before_commit")
    failpoint("after_commit")


def test_once_raises_the_first_time_only_until_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(faults.FAILPOINTS_VARIABLE, "after_commit:once")
    with pytest.raises(InjectedFault, match="once"):
        failpoint("after_commit")
    failpoint("after_commit")
    faults.reset()
    with pytest.raises(InjectedFault):
        failpoint("after_commit")


def test_pause_says_where_it_waits_and_gives_up_after_its_limit(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(faults.FAILPOINTS_VARIABLE, "before_commit:pause")
    monkeypatch.setenv(faults.PAUSE_SECONDS_VARIABLE, "0.01")
    with pytest.raises(InjectedFault, match="not killed"):
        failpoint("before_commit")
    assert "failpoint before_commit: paused (pid " in capsys.readouterr().err


def test_an_unknown_action_is_an_error_not_a_silent_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(faults.FAILPOINTS_VARIABLE, "after_copy:sometimes")
    with pytest.raises(ValueError, match="sometimes"):
        failpoint("after_copy")
