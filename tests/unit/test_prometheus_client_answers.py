"""The Prometheus adapter against a fake Prometheus: a real HTTP server on 127.0.0.1 in this process.

Every answer Prometheus (or a proxy in front of it) can give becomes data or one
``ports.MetricsError`` with its reason; timeouts and the circuit breaker are checked by counting the
connections the fake server received, not by timing.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import loopback_http

from healthscale import ports
from healthscale.adapters import prometheus

SAMPLE = "271828.5"
"""A sample value no message may quote."""


@dataclasses.dataclass
class Reply:
    status: int = 200
    body: Any = dataclasses.field(default_factory=lambda: matrix([[1_700_000_000, SAMPLE]]))
    content_type: str = "application/json"

    def encoded(self) -> bytes:
        return self.body if isinstance(self.body, bytes) else json.dumps(self.body).encode()


def success(data: Any) -> dict[str, Any]:
    return {"status": "success", "data": data}


def matrix(*values: Any) -> dict[str, Any]:
    return success({"resultType": "matrix", "result": [{"metric": {"i": str(i)}, "values": v}
                                                       for i, v in enumerate(values)]})


def vector(*samples: tuple[dict[str, str], Any]) -> dict[str, Any]:
    return success({"resultType": "vector", "result": [{"metric": labels, "value": [1_700_000_000, value]}
                                                       for labels, value in samples]})


def error(status: str, kind: str, text: str) -> dict[str, Any]:
    return {"status": status, "errorType": kind, "error": text}


class FakePrometheus:
    """Answers every request with ``reply`` and logs it: (path, query parameters, headers)."""

    def __init__(self) -> None:
        self.reply = Reply()
        self.requests: list[tuple[str, dict[str, str], dict[str, str]]] = []
        self.http = loopback_http.LoopbackHttp(self._respond)
        self.url = self.http.url

    def _respond(self, path: str, params: dict[str, str], headers: dict[str, str]) -> tuple[int, str, bytes]:
        self.requests.append((path, params, headers))
        return self.reply.status, self.reply.content_type, self.reply.encoded()

    def close(self) -> None:
        self.http.close()


class SocketServer:
    """Accepts TCP connections and counts them; ``silent`` never answers, otherwise it hangs up."""

    def __init__(self, silent: bool = True) -> None:
        self.silent = silent
        self.connections = 0
        self._accepted: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            if self.silent:
                self._accepted.append(connection)
            else:
                connection.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for connection in self._accepted:
            connection.close()
        self._listener.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake() -> Iterator[FakePrometheus]:
    server = FakePrometheus()
    yield server
    server.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(fake: FakePrometheus, clock: Clock) -> Iterator[prometheus.Client]:
    with prometheus.Client(fake.url, timeout=5, connect_timeout=2, cooldown=15, clock=clock) as made:
        yield made


def failure(call: Any) -> ports.MetricsError:
    with pytest.raises(ports.MetricsError) as caught:
        call()
    return caught.value


def test_a_range_read_returns_each_series_times_and_values(fake: FakePrometheus, client: prometheus.Client) -> None:
    fake.reply = Reply(body=matrix([[1_700_000_000, "1.5"], [1_700_000_060, "2"]], []))
    found = client.range("sum(demand)", 1_700_000_000, 1_700_000_060, 60)
    assert len(found) == 2
    np.testing.assert_array_equal(found[0][0], [1_700_000_000, 1_700_000_060])
    np.testing.assert_array_equal(found[0][1], [1.5, 2.0])
    assert found[1][0].size == 0 and found[1][0].dtype == np.float64
    path, params, _ = fake.requests[0]
    assert path == "/api/v1/query_range"
    assert params == {"query": "sum(demand)", "start": "1700000000", "end": "1700000060", "step": "60"}


def test_infinite_and_nan_samples_parse_as_floats_and_are_kept(fake: FakePrometheus, client: prometheus.Client) -> None:
    fake.reply = Reply(body=matrix([[1, "+Inf"], [2, "-Inf"], [3, "NaN"], [4, "7"]]))
    (_, values), = client.range("q", 1, 4, 1)
    assert values[0] == math.inf and values[1] == -math.inf and math.isnan(values[2]) and values[3] == 7.0
    fake.reply = Reply(body=vector(({"pod": "a"}, "+Inf"), ({"pod": "b"}, "NaN")))
    (labels, first), (_, second) = client.instant("q")
    assert labels == {"pod": "a"} and first == math.inf and math.isnan(second)


def test_an_instant_read_returns_labels_and_values(fake: FakePrometheus, client: prometheus.Client) -> None:
    fake.reply = Reply(body=vector(({"pod": "api-1"}, "3.5"), ({}, "4")))
    assert client.instant("load") == [({"pod": "api-1"}, 3.5), ({}, 4.0)]
    assert fake.requests[0][:2] == ("/api/v1/query", {"query": "load"})


def test_the_bearer_token_is_sent(fake: FakePrometheus) -> None:
    with prometheus.Client(fake.url, prometheus.Auth(bearer_token="s3cret")) as client:
        client.range("q", 0, 60, 60)
    assert fake.requests[0][2]["Authorization"] == "Bearer s3cret"


HTML = b"<html><head><title>502 Bad Gateway</title></head><body>" + SAMPLE.encode() + b"</body></html>"


@pytest.mark.parametrize(
    ("reply", "reason", "message"),
    [
        pytest.param(Reply(400, error("error", "bad_data", 'invalid parameter "query": 1:9: parse error: unclosed '
                                                         'left parenthesis')),
                     "InvalidQuery", "parse error: unclosed left parenthesis",
                     id="a 400 with a parse error is an invalid query with Prometheus' own text"),
        pytest.param(Reply(422, error("error", "execution", "vector cannot contain metrics with the same labelset")),
                     "InvalidQuery", "execution: vector cannot contain metrics with the same labelset",
                     id="a 422 execution error is an invalid query with Prometheus' own text"),
        pytest.param(Reply(400, HTML, "text/html"), "InvalidQuery", "HTTP 400 with a text/html body of",
                     id="a 400 from a proxy is an invalid query that describes the body"),
        pytest.param(Reply(503, error("error", "timeout", "query timed out in expression evaluation")),
                     "PrometheusUnavailable", "HTTP 503 .* timeout: query timed out",
                     id="a 503 is prometheus unavailable"),
        pytest.param(Reply(502, HTML, "text/html"), "PrometheusUnavailable", "HTTP 502 .* a text/html body of",
                     id="a 502 html page from a proxy is prometheus unavailable"),
        pytest.param(Reply(401, b"Unauthorized", "text/plain"), "PrometheusUnavailable", "HTTP 401",
                     id="a 401 is prometheus unavailable"),
        pytest.param(Reply(404, b"", "text/plain"), "PrometheusUnavailable", "HTTP 404 .* an empty body",
                     id="a 404 for a wrong url is prometheus unavailable"),
        pytest.param(Reply(body=success({"resultType": "scalar", "result": [1_700_000_000, SAMPLE]})),
                     "InvalidQuery", "returned a scalar result", id="a scalar result is an invalid query"),
        pytest.param(Reply(body=success({"resultType": "string", "result": [1_700_000_000, SAMPLE]})),
                     "InvalidQuery", "returned a string result", id="a string result is an invalid query"),
        pytest.param(Reply(body=success({"resultType": "vector", "result": []})),
                     "InvalidQuery", "returned a vector result", id="a vector from a range read is an invalid query"),
        pytest.param(Reply(body=success({"resultType": "matrix", "result": [
                         {"metric": {}, "histograms": [[1, {"count": SAMPLE}]]}]})),
                     "InvalidQuery", "native histogram", id="a native histogram series is an invalid query"),
        pytest.param(Reply(body={"status": "success"}), "BadResponse", "HTTP 200 without data",
                     id="a 200 without data is a bad response"),
        pytest.param(Reply(body=success({"resultType": "matrix"})), "BadResponse", "data has no result",
                     id="data without a result is a bad response"),
        pytest.param(Reply(body=success([SAMPLE])), "BadResponse", "data is a list, not an object",
                     id="data that is not an object is a bad response"),
        pytest.param(Reply(body=success({"resultType": "ragged", "result": []})), "BadResponse",
                     "resultType is 'ragged'", id="an unknown result type is a bad response"),
        pytest.param(Reply(body=success({"resultType": "matrix", "result": {"values": SAMPLE}})), "BadResponse",
                     "result is an object, not a list", id="a result that is not a list is a bad response"),
        pytest.param(Reply(body=success({"resultType": "matrix", "result": [SAMPLE]})), "BadResponse",
                     "series 0 of 1 is a string", id="a series that is not an object is a bad response"),
        pytest.param(Reply(body=success({"resultType": "matrix", "result": [{"metric": {}}]})), "BadResponse",
                     "series 0 has no values", id="a series without values is a bad response"),
        pytest.param(Reply(body=matrix([[1, SAMPLE, "3"]])), "BadResponse", "1 samples are not all \\[time",
                     id="samples of three items are a bad response"),
        pytest.param(Reply(body=matrix([1, SAMPLE])), "BadResponse", "2 samples are not all \\[time",
                     id="samples that are not pairs are a bad response"),
        pytest.param(Reply(body=matrix([[1, SAMPLE], [2, "lots"]])), "BadResponse", "2 samples are not all numbers",
                     id="a non-numeric sample string is a bad response that does not quote it"),
        pytest.param(Reply(body=matrix([[1, None]])), "BadResponse", "not all \\[time",
                     id="a null sample is a bad response, not a gap"),
        pytest.param(Reply(body=matrix([["yesterday", SAMPLE]])), "BadResponse", "not all \\[time",
                     id="a timestamp that is not a number is a bad response"),
        pytest.param(Reply(body=matrix([[1e400, SAMPLE]])), "BadResponse", "non-finite timestamp",
                     id="an infinite timestamp is a bad response"),
        pytest.param(Reply(body={"metric": {}, "values": SAMPLE}), "BadResponse", "without success: status None",
                     id="json without a status is a bad response"),
        pytest.param(Reply(body=error("error", "bad_data", "odd")), "BadResponse", "without success: bad_data: odd",
                     id="an error status in a 200 is a bad response with its text"),
        pytest.param(Reply(body=[SAMPLE]), "BadResponse", "HTTP 200 with JSON a list",
                     id="a json list is a bad response"),
        pytest.param(Reply(body=b"up 1\n" + SAMPLE.encode(), content_type="text/plain"), "BadResponse",
                     "HTTP 200 with a text/plain body of 13 bytes, not Prometheus' JSON",
                     id="a non-json body is a bad response that describes it without quoting it"),
        pytest.param(Reply(body=HTML, content_type="text/html"), "BadResponse", "a text/html body of",
                     id="an html page with a 200 is a bad response"),
        pytest.param(Reply(body=b"", content_type="application/json"), "BadResponse", "an empty body",
                     id="an empty body is a bad response"),
        pytest.param(Reply(body=b"[" * 100_000), "BadResponse", "application/json body of 100000 bytes",
                     id="json nested too deep to parse is a bad response"),
        pytest.param(Reply(body=b"\xff\xfe" + SAMPLE.encode()), "BadResponse", "body of 10 bytes",
                     id="a body that is not text is a bad response"),
    ],
)
def test_every_bad_answer_is_one_metrics_error_with_its_reason(
        fake: FakePrometheus, client: prometheus.Client, reply: Reply, reason: str, message: str) -> None:
    fake.reply = reply
    raised = failure(lambda: client.range("sum(demand)", 0, 600, 60))
    assert raised.reason == reason, str(raised)
    assert re.search(message, str(raised)), str(raised)
    assert SAMPLE not in str(raised) and "271828" not in str(raised)
    assert len(str(raised)) <= 2 * prometheus.MAX_MESSAGE


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(success({"resultType": "matrix", "result": []}), "returned a matrix result",
                     id="a matrix from an instant read is an invalid query"),
        pytest.param(success({"resultType": "vector", "result": [{"metric": SAMPLE, "value": [1, "2"]}]}),
                     "metric is a string, not an object", id="labels that are not an object are a bad response"),
        pytest.param(success({"resultType": "vector", "result": [{"metric": {}, "value": [1, "two"]}]}),
                     "1 samples are not all numbers", id="a non-numeric instant value is a bad response"),
        pytest.param(success({"resultType": "vector", "result": [{"metric": {}, "value": 7}]}),
                     "not all \\[time", id="an instant value that is not a pair is a bad response"),
        pytest.param(success({"resultType": "vector", "result": [{"metric": {}}]}),
                     "series 0 has no value", id="an instant series without a value is a bad response"),
    ],
)
def test_bad_instant_answers_are_metrics_errors(fake: FakePrometheus, client: prometheus.Client, body: Any,
                                                message: str) -> None:
    fake.reply = Reply(body=body)
    raised = failure(lambda: client.instant("q"))
    assert raised.reason in ("InvalidQuery", "BadResponse")
    assert re.search(message, str(raised)), str(raised)


def test_a_response_larger_than_the_limit_is_refused_as_an_invalid_query(fake: FakePrometheus, clock: Clock) -> None:
    fake.reply = Reply(body=matrix(*[[[1_700_000_000 + i, "1"] for i in range(1000)]] * 100))
    with prometheus.Client(fake.url, max_response_bytes=2**20, clock=clock) as client:
        raised = failure(lambda: client.range("demand", 0, 600, 60))
    assert raised.reason == "InvalidQuery"
    assert "exceeded 1 MiB" in str(raised)


@pytest.mark.parametrize(
    ("reply", "reaches"),
    [
        pytest.param(Reply(400, error("error", "bad_data", "parse error")), 3,
                     id="an invalid query does not open the breaker"),
        pytest.param(Reply(body=b"<html/>", content_type="text/html"), 3, id="a bad response does not open the breaker"),
        pytest.param(Reply(503, error("error", "unavailable", "starting up")), 1, id="a 503 opens the breaker"),
        pytest.param(Reply(500, HTML, "text/html"), 1, id="a 500 opens the breaker"),
    ],
)
def test_only_an_unavailable_prometheus_opens_the_breaker(fake: FakePrometheus, client: prometheus.Client,
                                                          reply: Reply, reaches: int) -> None:
    fake.reply = reply
    for _ in range(3):
        failure(lambda: client.range("q", 0, 60, 60))
    assert len(fake.requests) == reaches


def test_after_the_cooldown_one_call_probes_and_an_answer_closes_the_breaker(
        fake: FakePrometheus, client: prometheus.Client, clock: Clock) -> None:
    fake.reply = Reply(503, error("error", "unavailable", "starting up"))
    failure(lambda: client.instant("q"))
    clock.now += 10
    raised = failure(lambda: client.range("q", 0, 60, 60))
    assert raised.reason == "PrometheusUnavailable"
    assert str(raised).startswith("circuit open (Prometheus failed 10s ago: query: HTTP 503 ")
    assert str(raised).endswith("starting up; next attempt after 5s)")
    assert len(fake.requests) == 1

    clock.now += 5
    fake.reply = Reply(body=vector(({}, "1")))
    assert client.instant("q") == [({}, 1.0)]
    assert client.instant("q") == [({}, 1.0)]
    assert len(fake.requests) == 3


@pytest.fixture
def silent() -> Iterator[SocketServer]:
    server = SocketServer(silent=True)
    yield server
    server.close()


def test_a_silent_prometheus_is_contacted_once_per_call_and_then_not_until_the_cooldown_ends(
        silent: SocketServer, clock: Clock) -> None:
    read_timeout = 0.5
    with prometheus.Client(silent.url, timeout=read_timeout, connect_timeout=1, cooldown=15, clock=clock) as client:
        began = time.monotonic()
        raised = failure(lambda: client.range("q", 0, 60, 60))
        took = time.monotonic() - began
        assert (raised.reason, str(raised)) == ("PrometheusUnavailable",
                                                f"query_range: {silent.url} sent nothing for 0.5s")
        assert silent.connections == 1  # no retries
        assert took < 3 * read_timeout  # loose: one timeout, no backoff

        for _ in range(5):
            assert "circuit open" in str(failure(lambda: client.instant("q")))
        assert silent.connections == 1

        clock.now += 15
        failure(lambda: client.range("q", 0, 60, 60))  # the probe
        assert silent.connections == 2
        assert "next attempt after 15s" in str(failure(lambda: client.range("q", 0, 60, 60)))
        assert silent.connections == 2


def test_while_one_call_probes_the_other_threads_fail_fast(silent: SocketServer, clock: Clock) -> None:
    with prometheus.Client(silent.url, timeout=0.5, cooldown=15, clock=clock) as client:
        failure(lambda: client.range("q", 0, 60, 60))
        clock.now += 15
        barrier = threading.Barrier(8)
        messages: list[str] = []

        def call() -> None:
            barrier.wait()
            messages.append(str(failure(lambda: client.instant("q"))))

        threads = [threading.Thread(target=call) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert silent.connections == 2
    assert sum(message.startswith("circuit open") and message.endswith("a probe is in progress)")
               for message in messages) == 7
    assert sum(message == f"query: {silent.url} sent nothing for 0.5s" for message in messages) == 1


def test_a_refused_connection_is_unavailable_and_opens_the_breaker(clock: Clock) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
    with prometheus.Client(f"http://127.0.0.1:{port}", clock=clock) as client:
        raised = failure(lambda: client.range("q", 0, 60, 60))
        assert raised.reason == "PrometheusUnavailable"
        assert "Connection refused" in str(raised)
        assert "circuit open" in str(failure(lambda: client.range("q", 0, 60, 60)))


def test_a_server_that_hangs_up_is_unavailable() -> None:
    server = SocketServer(silent=False)
    try:
        with prometheus.Client(server.url) as client:
            raised = failure(lambda: client.instant("q"))
    finally:
        server.close()
    assert raised.reason == "PrometheusUnavailable"
    assert server.connections == 1


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("ftp://127.0.0.1:1", id="a url without an http scheme is unavailable, not an exception"),
        pytest.param("http://[::1", id="a malformed url is unavailable, not an exception"),
    ],
)
def test_a_bad_url_is_unavailable(url: str) -> None:
    with prometheus.Client(url) as client:
        assert failure(lambda: client.range("q", 0, 60, 60)).reason == "PrometheusUnavailable"


def test_label_values_ask_for_the_series_of_the_selector_in_the_range(fake: FakePrometheus,
                                                                      client: prometheus.Client) -> None:
    fake.reply = Reply(body=success(["0.1", "1.5", "+Inf"]))
    selector = 'http_request_duration_seconds_bucket{service="ehr-api"}'
    assert client.label_values("le", selector, 1_700_000_000, 1_700_003_600) == ["0.1", "1.5", "+Inf"]
    path, params, _ = fake.requests[-1]
    assert path == "/api/v1/label/le/values"
    assert params == {"match[]": selector, "start": "1700000000", "end": "1700003600"}


@pytest.mark.parametrize(
    ("label", "body", "reason"),
    [
        pytest.param("le", success([1.5, "+Inf"]), "BadResponse", id="label values that are not strings are a bad answer"),
        pytest.param("le", success({"le": []}), "BadResponse", id="an object where a list belongs is a bad answer"),
        pytest.param("le", error("error", "bad_data", "1:5: parse error"), "InvalidQuery",
                     id="a selector Prometheus cannot parse is an invalid query"),
        pytest.param("le/../../query", success([]), "InvalidQuery", id="a label name that is not one is never sent"),
    ],
)
def test_bad_label_values_answers_are_metrics_errors(fake: FakePrometheus, client: prometheus.Client, label: str,
                                                     body: Any, reason: str) -> None:
    fake.reply = Reply(status=400 if reason == "InvalidQuery" and label == "le" else 200, body=body)
    with pytest.raises(ports.MetricsError) as caught:
        client.label_values(label, "x_bucket", 0, 1)
    assert caught.value.reason == reason
