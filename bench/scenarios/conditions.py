"""Scenario 5, conditions: N conditional Triggers in one namespace, each checking its own path of an
HTTP source the bench serves (``/q00042`` answers ``{"value": 1}``) every ``interval`` seconds against
a threshold it never crosses (so nothing fires: the checks alone). Checks are counted where they
happen, at the source: the server records the arrival of each request per Trigger, so a check that
writes nothing to status (docs/conditions.md: only a check that changes something, or the
heartbeat, writes) is counted all the same. A watch of our own on Triggers counts the status
writes. After a warm-up (every Trigger checked once, then two intervals), over a window: checks per
second kept (against N / interval), the lateness of each check (the gap since the Trigger's
previous check minus the interval: the next check is due an interval after the last), and the
status writes per check."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from bench.common import Bench, Usage, Watcher, create_all, log, rounded, sleep_until, summary, trigger_body, wait_until

NAMESPACE = "bq-0"
ANSWER = b'{"value": 1}'


class Source:
    """The HTTP source every Trigger reads, one path each: the arrival of every request, per path."""

    def __init__(self) -> None:
        self.by_trigger: dict[str, list[float]] = defaultdict(list)  # name -> request arrivals
        self.lock = threading.Lock()

    @contextlib.contextmanager
    def serving(self) -> Iterator[int]:
        """Serves on a loopback port, on an event loop of its own thread: a thread per connection
        (http.server) and its listen backlog of 5 made the source itself late (SYN retries of 1 s)."""
        loop = asyncio.new_event_loop()
        started: concurrent.futures.Future[asyncio.Server] = concurrent.futures.Future()

        async def listen() -> None:
            started.set_result(await asyncio.start_server(self._answer, "127.0.0.1", 0, backlog=1024))

        thread = threading.Thread(target=loop.run_forever, daemon=True, name="condition-source")
        thread.start()
        asyncio.run_coroutine_threadsafe(listen(), loop)
        server = started.result(timeout=10)
        try:
            yield int(server.sockets[0].getsockname()[1])
        finally:
            loop.call_soon_threadsafe(server.close)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One request per connection (the operator keeps none alive): its arrival, then the answer."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            arrival = time.time()
            path = head.split(b" ", 2)[1].decode("ascii", "replace")
            with self.lock:
                self.by_trigger[path.strip("/")].append(arrival)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(ANSWER), ANSWER))
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, IndexError):
            pass
        finally:
            writer.close()

    def checked_once(self) -> int:
        with self.lock:
            return len(self.by_trigger)


class Writes:
    """Each status write of a Trigger, as our watch sees it (a MODIFIED event: nothing else writes them)."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []
        self.lock = threading.Lock()

    def on_event(self, kind: str, body: dict[str, Any], arrival: float) -> None:
        if kind == "MODIFIED":
            with self.lock:
                self.arrivals.append(arrival)


def run(bench: Bench, n: int = 1000, seconds: float = 120, interval: int = 10) -> dict[str, Any]:
    namespace = bench.namespace(NAMESPACE)
    source, writes = Source(), Writes()
    with source.serving() as port:
        watcher = Watcher(bench.kube, "trigger-operator.io", "v1alpha1", "triggers", writes.on_event).start_and_wait()
        operator = bench.operator(namespace).start()  # its sources may reach loopback (tests/harness.py)
        assert operator.process is not None
        log(f"creating {n} conditional Triggers checking http://127.0.0.1:{port}/<name> every {interval}s")
        create_all(bench.kube, [("trigger-operator.io", "v1alpha1", namespace, "triggers", trigger_body(
            f"q{i:05d}", namespace, {"conditionType": "threshold", "metric": "value", "threshold": 10,
                                     "comparison": ">", "checkIntervalSeconds": interval,
                                     "source": {"http": {"url": f"http://127.0.0.1:{port}/q{i:05d}",
                                                         "jsonPath": ".value"}}},
            trigger_type="conditional")) for i in range(n)], what="conditional Triggers")
        wait_until("Triggers checked once", lambda: source.checked_once() >= n,
                   lambda: f"{source.checked_once()}/{n}", timeout=600, every=10)
        log(f"warming up for {2 * interval}s, then measuring {seconds:.0f}s")
        time.sleep(2 * interval)
        before = bench.metrics(operator)
        usage = Usage(operator.process.pid).begin()
        start = time.time()
        sleep_until(start + seconds, "conditions", every=30)
        end = time.time()
        used = usage.end()
        after = bench.metrics(operator)
        watcher.stop()
    late: list[float] = []
    in_window = 0
    with source.lock:
        for times in source.by_trigger.values():
            ordered = sorted(times)
            in_window += sum(1 for t in ordered if start <= t < end)
            late += [current - previous - interval for previous, current in itertools.pairwise(ordered)
                     if start <= current < end]
    with writes.lock:
        written = sum(1 for t in writes.arrivals if start <= t < end)
    metric = {k: after[k] - before.get(k, 0.0) for k in after if k.startswith("trigger_operator_condition_checks")}
    window = end - start
    result: dict[str, Any] = {
        "n": n, "interval_s": interval, "window_s": rounded(window, 1), "source": "http (the bench's server)",
        "checks_per_s": rounded(in_window / window, 1), "expected_per_s": rounded(n / interval, 1),
        "checks_counted_by_metrics": metric,
        "within_1s_pct": rounded(100 * sum(1 for x in late if x <= 1.0) / len(late) if late else None, 1),
        "status_writes_per_s": rounded(written / window, 1),
        "status_writes_per_check": rounded(written / in_window if in_window else None, 3),
        "trigger": {**summary(late), **used}}
    result["targets"] = {"every_check_within_1s": bool(late) and max(late) <= 1.0,
                         "rate_kept": bool(result["checks_per_s"] and result["checks_per_s"] >= 0.99 * n / interval)}
    log(f"conditions: {result['checks_per_s']} checks/s of {n / interval:.0f}/s expected; lateness "
        f"p50 {result['trigger']['p50_s']}s p99 {result['trigger']['p99_s']}s max {result['trigger']['max_s']}s; "
        f"{result['status_writes_per_s']} status writes/s ({result['status_writes_per_check']} per check)")
    return result
