"""The dashboard's login limiter as a pure object, on a clock the test moves."""

from __future__ import annotations

from app.api import login_limiter
from app.api.login_limiter import LoginLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_attempt_beyond_the_limit_waits_until_the_oldest_leaves_the_window() -> None:
    clock = Clock()
    limiter = LoginLimiter(3, window=60, clock=clock)

    assert [limiter.wait_before("a") for _ in range(3)] == [0, 0, 0]
    clock.now += 10
    assert limiter.wait_before("a") == 50  # the first attempt leaves the window at +60
    assert limiter.wait_before("b") == 0  # another client has its own count
    clock.now += 50
    assert limiter.wait_before("a") == 0


def test_refused_attempts_do_not_extend_the_wait() -> None:
    clock = Clock()
    limiter = LoginLimiter(1, window=60, clock=clock)
    limiter.wait_before("a")
    for _ in range(100):
        limiter.wait_before("a")

    clock.now += 60
    assert limiter.wait_before("a") == 0


def test_the_number_of_clients_remembered_is_bounded() -> None:
    limiter = LoginLimiter(1, window=60, clock=Clock())
    for number in range(login_limiter.MAX_CLIENTS + 50):
        limiter.wait_before(f"10.0.{number // 256}.{number % 256}")

    assert len(limiter._seen) == login_limiter.MAX_CLIENTS
    assert limiter.wait_before("10.0.0.0") == 0  # the oldest were forgotten first
