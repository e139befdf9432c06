"""Prometheus' HTTP API as ``ports.Metrics``: the only module that speaks to Prometheus.

Owns the two query endpoints (``/api/v1/query`` and ``/api/v1/query_range``) and the label values
endpoint (``/api/v1/label/NAME/values``, for a histogram's bucket boundaries), their timeouts, the
circuit breaker one ``Client`` shares across threads, and turning every failure into
``ports.MetricsError``:

- ``PrometheusUnavailable``: refused, timed out, 5xx, or any other non-2xx except 400/422; also
  while the circuit is open;
- ``InvalidQuery``: Prometheus refused the PromQL (400, 422) or returned the wrong shape (a scalar
  or string where series are needed, a native histogram, a response too large);
- ``BadResponse``: a 2xx that is not Prometheus' JSON.

Messages say what was received (sizes, types, counts), never sample values, and are length-limited:
they end up in ClinicalSLO status.

This uses ``requests`` directly rather than prometheus-api-client's ``PrometheusConnect``: that
class retries 3 times with backoff by default, discards the status code and Prometheus' own
``error`` text (raising the whole body instead), indexes ``["data"]["result"]`` unchecked, drops
``resultType`` (so a scalar cannot be told from a vector) and ignores ``disable_ssl`` when given a
session. Two GET endpoints are simpler to own than to work around.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import requests
import requests.adapters

from healthscale import ports

MAX_MESSAGE = 300
"""Longest message text quoted from a response (Prometheus' ``error``), in characters."""

_JSON_TYPES = {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number",
               bool: "a boolean", type(None): "null"}


@dataclasses.dataclass(frozen=True)
class Auth:
    """How to reach Prometheus: bearer token and TLS options."""

    bearer_token: str | None = None
    ca_file: str | None = None
    insecure_skip_verify: bool = False


class _Breaker:
    """Fails calls fast for ``cooldown`` seconds after Prometheus was unavailable, then lets one
    call probe it while the others keep failing fast. Shared by every thread using one Client."""

    def __init__(self, cooldown: float, clock: Callable[[], float]) -> None:
        self._cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._failed_at: float | None = None
        self._cause = ""
        self._probing = False

    def enter(self) -> bool:
        """Whether this call is the probe; raises ``PrometheusUnavailable`` when the circuit is open."""
        with self._lock:
            if self._failed_at is None:
                return False
            ago = self._clock() - self._failed_at
            if ago >= self._cooldown and not self._probing:
                self._probing = True  # this call is the probe; the others fail fast until it is done
                return True
            wait = "a probe is in progress" if self._probing else f"next attempt after {self._cooldown - ago:.0f}s"
            raise ports.MetricsError("PrometheusUnavailable",
                                     f"circuit open (Prometheus failed {ago:.0f}s ago: {self._cause}; {wait})")

    def leave(self, probe: bool, unavailable: str | None) -> None:
        """Records one call's outcome: ``unavailable`` is why Prometheus did not answer, or None
        when it answered (even with an error about the query)."""
        with self._lock:
            if probe:
                self._probing = False
            if unavailable is None:
                self._failed_at = None
            else:
                self._failed_at, self._cause = self._clock(), unavailable


class Client:
    """``ports.Metrics`` over Prometheus' HTTP API.

    Every request has a connect and a read timeout (seconds) and is made once: no retries here, the
    next cycle is the retry. After a ``PrometheusUnavailable``, calls within ``cooldown`` seconds
    fail fast (see ``_Breaker``). ``clock`` is monotonic seconds, injectable for tests.
    """

    def __init__(self, url: str, auth: Auth = Auth(), timeout: float = 10.0, *, connect_timeout: float = 3.0,
                 cooldown: float = 15.0, max_response_bytes: int = 64 * 2**20,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url.rstrip("/")
        self._timeouts = (connect_timeout, timeout)
        self._max_bytes = max_response_bytes
        self._clock = clock
        self._breaker = _Breaker(cooldown, clock)
        self._session = requests.Session()
        # requests' default is already no retries; said explicitly because the old client retried 3 times.
        no_retries = requests.adapters.HTTPAdapter(max_retries=0, pool_maxsize=16)
        self._session.mount("http://", no_retries)
        self._session.mount("https://", no_retries)
        if auth.bearer_token:
            self._session.headers["Authorization"] = f"Bearer {auth.bearer_token}"
        self._session.verify = False if auth.insecure_skip_verify else (auth.ca_file or True)

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def range(self, query: str, start: int, end: int, step: int) -> list[ports.Samples]:
        """Every series the query returns over ``[start, end]`` at ``step``: (epoch seconds, values)."""
        data = self._get("query_range", {"query": query, "start": start, "end": end, "step": step})
        found: list[ports.Samples] = []
        for index, item in enumerate(_result(data, "matrix", "query_range")):
            pairs = _pairs(_field(item, "values", index), index)
            found.append((pairs[:, 0].copy(), pairs[:, 1].copy()))
        return found

    def instant(self, query: str) -> list[tuple[dict[str, str], float]]:
        """The query's series now: (labels, value)."""
        data = self._get("query", {"query": query})
        found = []
        for index, item in enumerate(_result(data, "vector", "query")):
            labels = item.get("metric", {})
            if not isinstance(labels, dict):
                raise _bad(f"series {index}'s metric is {_kind(labels)}, not an object of labels")
            pair = _pairs([_field(item, "value", index)], index)
            found.append(({str(name): str(value) for name, value in labels.items()}, float(pair[0, 1])))
        return found

    def label_values(self, label: str, selector: str, start: int, end: int) -> list[str]:
        """The values ``label`` takes on the series ``selector`` matches within ``[start, end]``."""
        if not _LABEL_NAME.fullmatch(label):
            raise ports.MetricsError("InvalidQuery", f"{label[:80]!r} is not a label name")
        endpoint = f"label/{label}/values"
        data = self._get(endpoint, {"match[]": selector, "start": start, "end": end})
        if not isinstance(data, list) or not all(isinstance(value, str) for value in data):
            raise _bad(f"{endpoint}'s data is {_kind(data)}, not a list of strings")
        return list(data)

    def _get(self, endpoint: str, params: dict[str, Any]) -> Any:
        """The ``data`` of a successful answer; opens the breaker when Prometheus did not answer."""
        probe = self._breaker.enter()
        unavailable: str | None = None
        try:
            return self._request(endpoint, params)
        except ports.MetricsError as error:
            if error.reason == "PrometheusUnavailable":
                unavailable = str(error)
            raise
        finally:
            self._breaker.leave(probe, unavailable)

    def _request(self, endpoint: str, params: dict[str, Any]) -> Any:
        where = f"{self.url}/api/v1/{endpoint}"
        connect, read = self._timeouts
        try:
            with self._session.get(where, params=params, timeout=self._timeouts, stream=True) as response:
                body = self._body(response, read, endpoint)
        except requests.ConnectTimeout:
            raise _unavailable(f"{endpoint}: no connection to {self.url} within {connect:g}s") from None
        except requests.Timeout:
            raise _unavailable(f"{endpoint}: {self.url} sent nothing for {read:g}s") from None
        except requests.ConnectionError as error:
            raise _unavailable(f"{endpoint}: cannot reach {self.url}: {_clip(_root(error), 200)}") from None
        except (requests.RequestException, OSError, ValueError) as error:
            # Also what requests does not wrap (a bad URL or header, a TLS file that cannot be read).
            raise _unavailable(f"{endpoint}: request to {self.url} failed: {_clip(_root(error), 200)}") from None
        status = response.status_code
        document = _json(body)
        if status in (400, 422):
            # 400: the PromQL does not parse or has bad parameters; 422: it cannot be executed.
            text = _error_text(document) or f"HTTP {status} with {_describe(response, body)}"
            raise ports.MetricsError("InvalidQuery", f"Prometheus refused the query ({endpoint}): {text}")
        if not 200 <= status < 300:
            text = _error_text(document) or _describe(response, body)
            raise _unavailable(f"{endpoint}: HTTP {status} from {self.url}: {text}")
        if not isinstance(document, dict):
            what = _describe(response, body) if document is _NOT_JSON else f"JSON {_kind(document)}"
            raise _bad(f"{endpoint} answered HTTP {status} with {what}, not Prometheus' JSON")
        if document.get("status") != "success":
            text = _error_text(document) or f"status {_clip(repr(document.get('status')), 40)}"
            raise _bad(f"{endpoint} answered HTTP {status} without success: {text}")
        if "data" not in document:
            raise _bad(f"{endpoint} answered HTTP {status} without data")
        return document["data"]

    def _body(self, response: requests.Response, read: float, endpoint: str) -> bytes:
        """The body, at most ``max_response_bytes``, read within ``read`` seconds in all."""
        deadline = self._clock() + read
        chunks, size = [], 0
        for chunk in response.iter_content(chunk_size=64 * 1024):
            size += len(chunk)
            if size > self._max_bytes:
                raise ports.MetricsError("InvalidQuery", f"{endpoint}: the response exceeded "
                                         f"{self._max_bytes // 2**20} MiB; the query returns too many series")
            if self._clock() > deadline:
                raise _unavailable(f"{endpoint}: {self.url} did not finish its answer within {read:g}s")
            chunks.append(chunk)
        return b"".join(chunks)


_NOT_JSON = object()
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_NUMBER = (int, float)
_SAMPLE = (str, int, float)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # ValueError covers JSONDecodeError and UnicodeDecodeError
        return _NOT_JSON


def _result(data: Any, expected: str, endpoint: str) -> list[dict[str, Any]]:
    """``data.result`` when it is a list of series of the expected type."""
    if not isinstance(data, dict):
        raise _bad(f"{endpoint}'s data is {_kind(data)}, not an object")
    kind = data.get("resultType")
    if "result" not in data:
        raise _bad(f"{endpoint}'s data has no result (resultType {_clip(repr(kind), 40)})")
    if kind in ("scalar", "string", "matrix", "vector") and kind != expected:
        raise ports.MetricsError("InvalidQuery", f"{endpoint} returned a {kind} result, where series "
                                 f"(a {expected}) are needed; the query must select series, e.g. sum(...)")
    if kind != expected:
        raise _bad(f"{endpoint}'s resultType is {_clip(repr(kind), 40)}, not {expected!r}")
    result = data["result"]
    if not isinstance(result, list):
        raise _bad(f"{endpoint}'s {expected} result is {_kind(result)}, not a list")
    for index, item in enumerate(result):
        if not isinstance(item, dict):
            raise _bad(f"{endpoint}'s series {index} of {len(result)} is {_kind(item)}, not an object")
    return result


def _field(item: dict[str, Any], name: str, index: int) -> Any:
    if name not in item:
        if "histogram" in item or "histograms" in item:
            raise ports.MetricsError("InvalidQuery", f"series {index} is a native histogram; query a number from "
                                     f"it, e.g. histogram_count(...) or histogram_quantile(...)")
        raise _bad(f"series {index} has no {name}")
    return item[name]


def _pairs(values: Any, index: int) -> npt.NDArray[np.float64]:
    """``[[time, "value"], ...]`` as an (n, 2) float array; "NaN", "+Inf" and "-Inf" parse as such."""
    if not isinstance(values, list):
        raise _bad(f"series {index}'s samples are {_kind(values)}, not a list")
    # Types first (numpy would read null as NaN and true as 1), then numpy parses the strings fast.
    # Messages count samples and never quote them, nor numpy's error, which does.
    for pair in values:
        if (type(pair) is not list or len(pair) != 2 or type(pair[0]) not in _NUMBER
                or type(pair[1]) not in _SAMPLE):
            raise _bad(f"series {index}'s {len(values)} samples are not all [time, \"number\"] pairs")
    if not values:
        return np.empty((0, 2))
    try:
        pairs: npt.NDArray[np.float64] = np.asarray(values, dtype=np.float64)
    except (ValueError, TypeError, OverflowError):
        raise _bad(f"series {index}'s {len(values)} samples are not all numbers") from None
    if not np.isfinite(pairs[:, 0]).all():
        raise _bad(f"series {index} has samples with a non-finite timestamp")
    return pairs


def _error_text(document: Any) -> str | None:
    """Prometheus' own ``errorType: error`` of an error answer, clipped."""
    if isinstance(document, dict) and isinstance(document.get("error"), str):
        kind = document.get("errorType")
        prefix = f"{kind}: " if isinstance(kind, str) and kind else ""
        return _clip(prefix + document["error"], MAX_MESSAGE)
    return None


def _describe(response: requests.Response, body: bytes) -> str:
    """What a body that is not Prometheus' JSON was, without quoting it (it may hold samples)."""
    kind = response.headers.get("Content-Type", "no content type").split(";")[0].strip() or "no content type"
    return f"a {kind} body of {len(body)} bytes" if body else "an empty body"


def _kind(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _root(error: BaseException) -> str:
    """The innermost error's text: requests wraps urllib3's, which wraps the socket's."""
    while True:
        inner = getattr(error, "reason", None)
        if not isinstance(inner, BaseException) and error.args and isinstance(error.args[0], BaseException):
            inner = error.args[0]
        if not isinstance(inner, BaseException):
            return str(error)
        error = inner


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _unavailable(message: str) -> ports.MetricsError:
    return ports.MetricsError("PrometheusUnavailable", _clip(message, 2 * MAX_MESSAGE))


def _bad(message: str) -> ports.MetricsError:
    return ports.MetricsError("BadResponse", _clip(message, 2 * MAX_MESSAGE))
