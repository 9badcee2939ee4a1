"""How many dashboard logins one client may try: a sliding window per client address.

The login form takes an API key, so without a limit it is an oracle for guessing keys
(the keys are 256-bit random, but keys made by hand may not be). Every attempt counts,
accepted or not; the attempt beyond the limit is answered 429 with ``Retry-After``.

The count lives in this API process's memory: each process counts on its own (run N
processes and a client gets N times the limit), and a restart forgets. That is enough
to make guessing slow; a shared limit across processes belongs in the proxy in front.
The client is ``request.client.host``: behind a proxy run uvicorn with
``--proxy-headers --forwarded-allow-ips=<proxy>`` so that it is the real client.
A hand-written window rather than a library: it is twenty lines, and the libraries
(``limits``, ``slowapi``) bring storage backends this does not need.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

#: Clients remembered at most; the least recently seen are forgotten first, so a flood of
#: addresses cannot grow the process without bound.
MAX_CLIENTS = 10_000


class LoginLimiter:
    """At most ``attempts`` logins per client in any ``window`` seconds."""

    def __init__(
        self, attempts: int, window: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.attempts = attempts
        self.window = window
        self._clock = clock
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def wait_before(self, client: str) -> float:
        """Record an attempt by ``client``: 0 when it may proceed, else the seconds until
        it may try again (the refused attempt is not counted)."""
        now = self._clock()
        with self._lock:
            times = self._seen.pop(client, None) or deque()
            while times and times[0] <= now - self.window:
                times.popleft()
            wait = 0.0
            if len(times) >= self.attempts:
                wait = times[0] + self.window - now
            else:
                times.append(now)
            self._seen[client] = times  # most recently seen last
            while len(self._seen) > MAX_CLIENTS:
                self._seen.popitem(last=False)
            return wait
