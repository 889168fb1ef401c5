"""A crowd on the WiFi: the bench page goes first, and the journal hears only what a host can act on.

The web server (server/serving.py) puts the live log's watchers, who ask
twice a second each, behind everyone else's requests; and where waitress
wrote "Task queue depth is N" for every request that waited for a thread
(thousands a minute under load, on a Pi all into journald), the hub says
once a minute at most, in plain words, that requests keep waiting.
"""

from __future__ import annotations

import http.client
import logging
import threading
from collections.abc import Callable
from types import SimpleNamespace

from waitress.task import ThreadedTaskDispatcher

from server.serving import (
    OVERLOAD_LOG_INTERVAL_S,
    SUSTAINED_S,
    HubDispatcher,
    OverloadWatch,
)
from tests.test_open_wifi import hub_serving

EVENTS = "/host/live/events"


class Task:
    """A request as waitress queues it: a connection whose next request is for ``path``."""

    back_seated = False
    dispatcher: HubDispatcher | None = None

    def __init__(self, name: str, path: str, done: list[str], hold: threading.Event | None = None) -> None:
        self.name = name
        self.requests = [SimpleNamespace(path=path)]
        self.done = done
        self.hold = hold
        self.started = threading.Event()

    def service(self) -> None:
        self.started.set()
        if self.hold is not None:
            self.hold.wait(10)
        self.done.append(self.name)
        if self.back_seated:  # as the hub's connections do (serving.HubChannel.service)
            self.back_seated = False
            self.dispatcher.back_seat_done()


def queued(dispatcher: ThreadedTaskDispatcher, task: Task) -> Task:
    task.dispatcher = dispatcher
    dispatcher.add_task(task)
    return task


def wait_until(done: Callable[[], bool]) -> bool:
    for _ in range(200):
        if done():
            return True
        threading.Event().wait(0.05)
    return False


def served_in_order(dispatcher: ThreadedTaskDispatcher, queue: Callable[[list[str]], list[Task]]) -> list[str]:
    """One thread, kept busy while ``queue`` adds its tasks; then the order they were served in."""
    done: list[str] = []
    busy = threading.Event()
    dispatcher.set_thread_count(1)
    try:
        first = queued(dispatcher, Task("busy", "/", done, hold=busy))
        assert first.started.wait(10)  # the one thread is busy: what follows waits in the queue
        tasks = [queued(dispatcher, task) for task in queue(done)]
        busy.set()
        wait_until(lambda: len(done) == len(tasks) + 1)
    finally:
        dispatcher.shutdown(timeout=5)
    return done[1:]


def test_the_bench_page_goes_before_watchers_asking_again_and_a_watcher_kept_waiting_gets_its_turn():
    dispatcher = HubDispatcher(OverloadWatch(threads=1), back_seat_paths={EVENTS})
    order = served_in_order(dispatcher, lambda done: [
        Task("watcher 1", EVENTS, done), Task("watcher 2", EVENTS, done),
        Task("bench page 1", "/", done), Task("bench page 2", "/", done),
    ])
    assert order == ["bench page 1", "bench page 2", "watcher 1", "watcher 2"]

    # A watcher that has waited its longest already (here: at once) takes turns with the others.
    dispatcher = HubDispatcher(OverloadWatch(threads=1), back_seat_paths={EVENTS})
    dispatcher.queue.max_wait_s = 0
    order = served_in_order(dispatcher, lambda done: [
        Task("watcher 1", EVENTS, done), Task("watcher 2", EVENTS, done),
        Task("bench page 1", "/", done), Task("bench page 2", "/", done), Task("bench page 3", "/", done),
    ])
    assert order == ["bench page 1", "watcher 1", "bench page 2", "watcher 2", "bench page 3"]


def test_watchers_never_hold_the_last_thread_a_held_stream_counts():
    dispatcher = HubDispatcher(OverloadWatch(threads=2), back_seat_paths={EVENTS})
    dispatcher.set_thread_count(2)
    done: list[str] = []
    ending = threading.Event()
    try:
        held = queued(dispatcher, Task("held stream", EVENTS, done, hold=ending))
        assert held.started.wait(10)
        watcher = queued(dispatcher, Task("watcher", EVENTS, done))
        queued(dispatcher, Task("bench page", "/", done))
        # The watcher came first, but the one thread left is the bench page's; the watcher waits for the stream.
        assert wait_until(lambda: "bench page" in done)
        assert not watcher.started.is_set()
        ending.set()
        assert wait_until(lambda: done == ["bench page", "held stream", "watcher"])
    finally:
        ending.set()
        dispatcher.shutdown(timeout=5)


def test_requests_waiting_for_a_thread_leave_no_line_each_in_the_log(caplog):
    def forty(done: list[str]) -> list[Task]:
        return [Task(f"page {n}", "/", done) for n in range(40)]

    caplog.set_level(logging.DEBUG)
    # As waitress ships: a warning for each request that found no thread free.
    assert len(served_in_order(ThreadedTaskDispatcher(), forty)) == 40
    assert sum("Task queue depth" in record.getMessage() for record in caplog.records) >= 39
    caplog.clear()

    assert len(served_in_order(HubDispatcher(OverloadWatch(threads=1)), forty)) == 40
    assert caplog.records == []


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_overload_is_said_once_a_minute_plainly_and_a_moments_burst_not_at_all(caplog):
    caplog.set_level(logging.INFO, logger="server.serving")
    clock = Clock()
    watch = OverloadWatch(threads=4, clock=clock)

    def requests_wait(seconds: int, waited: float) -> None:
        for _ in range(seconds * 16):  # sixteen a second: steps a float adds up exactly
            clock.now += 1 / 16
            watch.waited(waited)

    requests_wait(60, waited=0.4)  # busy, but every request served within half a second: nothing to say
    requests_wait(int(SUSTAINED_S / 2), waited=1.5)  # a moment's burst: nothing to say either
    requests_wait(10, waited=0.2)
    assert caplog.records == []

    requests_wait(3 * OVERLOAD_LOG_INTERVAL_S, waited=2.5)  # three minutes of it: said three times, and no more
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 3
    assert all(record.levelname == "WARNING" for record in caplog.records)
    assert lines[0].startswith(
        f"overloaded: for {int(SUSTAINED_S)} s requests have waited over 1 s for one of the 4 web threads "
        f"(161 such requests in the last 10 s, the longest 2.5 s), so pages are slow for everyone.")
    assert "for 70 s requests" in lines[1] and "(960 such requests in the last 60 s" in lines[1]
    assert "for 130 s requests" in lines[2]


def test_a_hundred_phones_at_once_leave_the_hubs_log_quiet(tmp_path):
    with hub_serving(tmp_path) as hub:
        started = len(hub.log().splitlines())
        answers: list[int] = []
        lock = threading.Lock()

        def phone(n: int) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", hub.port, timeout=30, source_address=(f"127.0.1.{n}", 0))
            try:
                for _ in range(3):
                    conn.request("GET", "/")
                    response = conn.getresponse()
                    response.read()
                    with lock:
                        answers.append(response.status)
            finally:
                conn.close()

        phones = [threading.Thread(target=phone, args=(n,)) for n in range(1, 101)]
        for thread in phones:
            thread.start()
        for thread in phones:
            thread.join(timeout=60)
        assert answers == [200] * 300
        said = hub.log().splitlines()[started:]
    # A hundred phones on four threads: many waited, and none of it is worth a line.
    assert said == [], said
