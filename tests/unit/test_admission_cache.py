"""The webhook's watch-fed caches without a cluster (``adapters.watchcache``): list, then watch;
list again when the watch expires (410) or fails; keep serving meanwhile; every call timed out.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3

from healthscale.adapters import watchcache


class Answer:
    """What the kubernetes client returns with _preload_content=False: a body, or a stream."""

    def __init__(self, body: dict[str, Any] | None = None, events: list[dict[str, Any]] | None = None) -> None:
        self.data = json.dumps(body).encode() if body is not None else b""
        self.events = events or []
        self.closed = threading.Event()

    def stream(self, amt: Any = None, decode_content: bool = False) -> Iterator[bytes]:
        for event in self.events:
            yield (json.dumps(event) + "\n").encode()
        self.closed.wait(10)  # a watch with nothing more to say stays open until closed
        raise urllib3.exceptions.ProtocolError("connection closed")

    def release_conn(self) -> None:
        pass

    def close(self) -> None:
        self.closed.set()


def node(name: str, version: str, region: str = "eu-west-1") -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": version, "labels": {"region": region}}}


class FakeServer:
    """Answers list and watch calls from a script; records how each was made."""

    def __init__(self, script: list[Any]) -> None:
        self.script = script
        self.calls: list[dict[str, Any]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        step = self.script.pop(0) if self.script else Answer(events=[])
        if isinstance(step, Exception):
            raise step
        return step


def listing(version: str, *items: dict[str, Any]) -> Answer:
    return Answer({"metadata": {"resourceVersion": version}, "items": list(items)})


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watchcache, "BACKOFF", (0.01, 0.05))


def cache(server: FakeServer, changes: list[str] | None = None) -> watchcache.Cache[dict[str, str]]:
    return watchcache.Cache("nodes", lambda core: server, watchcache.node_labels, watch_seconds=60,
                            timeout=(2.0, 9.0), on_change=lambda: changes.append("changed") if changes is not None
                            else None)


def settle(found: watchcache.Cache[dict[str, str]], expected: dict[str, dict[str, str]]) -> None:
    deadline = time.monotonic() + 10
    while found.snapshot() != expected:
        assert time.monotonic() < deadline, found.snapshot()
        time.sleep(0.01)


def test_a_watch_that_expires_is_followed_by_a_fresh_list_that_drops_what_was_deleted() -> None:
    server = FakeServer([
        listing("1", node("a", "1")),
        Answer(events=[{"type": "ADDED", "object": node("b", "2")},
                       {"type": "ERROR", "object": {"code": 410, "reason": "Expired", "message": "too old"}}]),
        listing("5", node("a", "1"), node("c", "5", "us-east-1")),
    ])
    changes: list[str] = []
    found = cache(server, changes).start()
    try:
        settle(found, {"a": {"region": "eu-west-1"}, "c": {"region": "us-east-1"}})
        assert found.synced.is_set()
        assert found.get("b") is None and found.get("c") == {"region": "us-east-1"}
        assert len(changes) == 3  # the first list, b added, the relist
        lists = [call for call in server.calls if not call.get("watch")]
        watches = [call for call in server.calls if call.get("watch")]
        assert len(lists) == 2
        assert watches[0]["resource_version"] == "1" and watches[0]["allow_watch_bookmarks"] is True
        assert watches[0]["timeout_seconds"] == 60 and watches[0]["_request_timeout"] == (2.0, 60 + watchcache.READ_MARGIN)
        assert lists[0]["_request_timeout"] == (2.0, 9.0), "every list has the usual timeout"
    finally:
        found.stop()


def test_events_are_applied_in_order_and_bookmarks_only_move_the_version() -> None:
    server = FakeServer([
        listing("1", node("a", "1")),
        Answer(events=[{"type": "MODIFIED", "object": node("a", "2", "us-east-1")},
                       {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "7"}}},
                       {"type": "DELETED", "object": node("a", "8")}]),
    ])
    found = cache(server).start()
    try:
        settle(found, {})
    finally:
        found.stop()


def test_after_an_error_the_cache_lists_again_after_a_pause_and_stop_ends_the_watch() -> None:
    gate = Answer(events=[])
    server = FakeServer([
        listing("1", node("a", "1")),
        urllib3.exceptions.ReadTimeoutError(None, "/api/v1/nodes", "read timed out"),  # the watch
        urllib3.exceptions.NewConnectionError(None, "refused"),  # the next list: still down
        listing("9", node("a", "9", "eu-central-1")),
        gate,
    ])
    found = cache(server).start()
    try:
        settle(found, {"a": {"region": "eu-central-1"}})
        assert len([call for call in server.calls if not call.get("watch")]) == 3
    finally:
        found.stop()
    assert gate.closed.is_set(), "stop() ends the open watch"
