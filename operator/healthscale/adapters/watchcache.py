"""Objects kept in memory by list and watch, in a thread of their own: what admission reads.

The admission webhook answers from these caches and never calls the API server per request, so
its latency does not depend on the API server's (and a slow API server cannot hold its workers).
Each ``Cache`` lists its objects (paged), then watches from the list's resourceVersion with
bookmarks. It lists again when the watch expires (410 Gone) and, after a back-off, on any other
error; meanwhile it keeps serving what it has. Every request has a timeout: the list the usual
(connect, read) one, the watch the server-side ``timeoutSeconds`` plus a margin for reads, so a
watch the API server stopped feeding is dropped and re-opened instead of hanging.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

import kubernetes

from healthscale import ports
from healthscale.adapters import kube

T = TypeVar("T")
log = logging.getLogger(__name__)

WATCH_SECONDS = 120
"""Server-side length of one watch request; the read timeout is this plus ``READ_MARGIN``."""
READ_MARGIN = 30.0
BACKOFF = (1.0, 30.0)
"""First and longest pause before listing again after an error."""
PAGE = 500


class _Expired(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""


def node_labels(raw: Mapping[str, Any]) -> dict[str, str]:
    return dict((raw.get("metadata") or {}).get("labels") or {})


def labels_and_annotations(raw: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    metadata = raw.get("metadata") or {}
    return dict(metadata.get("labels") or {}), dict(metadata.get("annotations") or {})


def whole(raw: Mapping[str, Any]) -> dict[str, Any]:
    return dict(raw)


class Cache(Generic[T]):
    """Every object one list call returns, by name, as ``transform`` made it."""

    def __init__(self, what: str, list_method: Callable[[kubernetes.client.CoreV1Api], Callable[..., Any]],
                 transform: Callable[[Mapping[str, Any]], T], *, args: tuple[Any, ...] = (),
                 field_selector: str | None = None, on_change: Callable[[], None] | None = None,
                 api_client: kubernetes.client.ApiClient | None = None,
                 timeout: tuple[float, float] = kube.TIMEOUT, watch_seconds: int = WATCH_SECONDS) -> None:
        self.what = what
        self._api = kube.Api(api_client, timeout)
        self._list = list_method(kubernetes.client.CoreV1Api(self._api.client))
        self._transform = transform
        self._args = args
        self._selector = {"field_selector": field_selector} if field_selector else {}
        self._on_change = on_change
        self._connect_timeout = timeout[0]
        self._watch_seconds = watch_seconds
        self._items: dict[str, T] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self.synced = threading.Event()
        """Set once the first list has been stored."""
        self._response: Any = None
        self._thread = threading.Thread(target=self._run, name=f"cache-{what}", daemon=True)

    # ---------------------------------------------------------------------------- reading

    def get(self, name: str) -> T | None:
        with self._lock:
            return self._items.get(name)

    def snapshot(self) -> dict[str, T]:
        with self._lock:
            return dict(self._items)

    # ---------------------------------------------------------------------------- running

    def start(self) -> Cache[T]:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        response = self._response
        if response is not None:
            response.close()  # ends a watch that is waiting for the next event
        self._thread.join(timeout=5)
        self._api.client.close()  # type: ignore[no-untyped-call]

    def _run(self) -> None:
        pause = BACKOFF[0]
        while not self._stopped.is_set():
            try:
                version = self._relist()
                pause = BACKOFF[0]
                while not self._stopped.is_set():
                    version = self._watch(version)
            except _Expired:
                log.debug("watch of %s expired; listing again", self.what)
            except (ports.ApiError, ports.NotFound) as error:
                if self._stopped.is_set():
                    return
                log.warning("watching %s failed (%s); listing again in %.0fs, serving what is cached meanwhile",
                            self.what, error, pause)
                self._stopped.wait(pause)
                pause = min(pause * 2, BACKOFF[1])

    def _relist(self) -> str:
        items: dict[str, T] = {}
        page: str | None = None
        doing = f"list {self.what}"
        while True:
            listed = self._api.json(doing, self._list, *self._args, limit=PAGE, _continue=page, **self._selector)
            with kube.errors(doing):
                for raw in listed.get("items") or []:
                    items[str(raw["metadata"]["name"])] = self._transform(raw)
                metadata = listed.get("metadata") or {}
                page = str(metadata.get("continue") or "") or None
                version = str(metadata["resourceVersion"])
            if page is None:
                break
        with self._lock:
            changed = items != self._items
            self._items = items
        self.synced.set()
        if changed:
            self._changed()
        return version

    def _lines(self, response: Any) -> Iterator[bytes]:
        pending = b""
        for chunk in response.stream(amt=None, decode_content=False):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            yield from (line for line in lines if line.strip())
        if pending.strip():
            yield pending

    def _watch(self, version: str) -> str:
        """One watch request from ``version``; the last resourceVersion seen when it ends normally."""
        doing = f"watch {self.what}"
        with kube.errors(doing):
            self._response = self._list(
                *self._args, watch=True, resource_version=version, allow_watch_bookmarks=True,
                timeout_seconds=self._watch_seconds, _preload_content=False,
                _request_timeout=(self._connect_timeout, self._watch_seconds + READ_MARGIN), **self._selector)
            try:
                for line in self._lines(self._response):
                    event = json.loads(line)
                    kind, raw = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":
                        if raw.get("code") == 410:
                            raise _Expired()
                        raise ports.ApiError(f"{doing}: {raw.get('reason')}: {raw.get('message')}",
                                             retryable=True, status=int(raw.get("code") or 0))
                    version = str(raw["metadata"]["resourceVersion"])
                    if kind == "BOOKMARK":
                        continue
                    name = str(raw["metadata"]["name"])
                    with self._lock:
                        if kind == "DELETED":
                            changed = self._items.pop(name, None) is not None
                        else:
                            value = self._transform(raw)
                            changed = self._items.get(name) != value
                            self._items[name] = value
                    if changed:
                        self._changed()
            finally:
                response, self._response = self._response, None
                response.release_conn()
        return version

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()
