"""The Kubernetes adapters against fake API servers on loopback: timeouts and the error mapping.

- a server that accepts a connection and never answers: every adapter method gives up after its
  read timeout, once (no urllib3 retries), with ``ApiError(retryable=True, status=0)``;
- a server that answers with a given HTTP status: 404 is ``NotFound``, conflicts, throttling and
  server errors are retryable, refusals are not, and a body that is not the API's JSON is an
  ``ApiError`` too; the scale subresource's uid precondition failure is ``NotFound``.

The real API server's answers are in tests/integration/test_kube_adapter.py.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import kubernetes
import pytest

from healthscale import ports
from healthscale.adapters import kube, placement

TIMEOUT = (0.5, 0.5)
Call = Callable[[kube.Workloads, kube.ClinicalSLOs, placement.Placement], object]

# Every method of the adapters that makes a request, by what it does.
CALLS: dict[str, Call] = {
    "reading a workload": lambda w, r, p: w.read("ehr", "Deployment", "ehr-api"),
    "reading replicas": lambda w, r, p: w.read_field("ehr", "StatefulSet", "db", "replicas"),
    "reading an HPA floor": lambda w, r, p: w.read_field("ehr", "HorizontalPodAutoscaler", "ehr-api", "minReplicas"),
    "writing replicas": lambda w, r, p: w.write_field("ehr", "Deployment", "ehr-api", "u-1", "replicas", 5),
    "writing an HPA floor": lambda w, r, p: w.write_field("ehr", "HorizontalPodAutoscaler", "ehr-api", "u-1",
                                                          "minReplicas", 5),
    "listing pods": lambda w, r, p: w.pods("ehr", "app=ehr-api"),
    "annotating pods": lambda w, r, p: w.set_deletion_costs("ehr", {"ehr-api-1": 3}),
    "writing a SurgeSchedule status": lambda w, r, p: w.set_schedule_status("ehr", "shifts", {"windows": []}),
    "recording originals": lambda w, r, p: r.save_originals("ehr", "chart", [{"kind": "Deployment"}]),
    "listing every ClinicalSLO": lambda w, r, p: r.list_all(),
    "removing a finalizer": lambda w, r, p: r.remove_finalizer("ehr", "chart", "healthscale.io/restore"),
    "reading a pod template": lambda w, r, p: p.read_template("ehr", "Deployment", "ehr-api"),
    "listing pods for residency": lambda w, r, p: p.pods("ehr", "app=ehr-api"),
    "listing nodes": lambda w, r, p: p.nodes(),
    "evicting a pod": lambda w, r, p: p.evict("ehr", "ehr-api-1"),
}
WRITES = {"writing replicas", "writing an HPA floor", "annotating pods", "writing a SurgeSchedule status",
          "recording originals", "evicting a pod"}
# Where a missing object is "nothing to do" (or another answer), not NotFound.
MISSING_IS_FINE = {"annotating pods", "writing a SurgeSchedule status", "removing a finalizer", "evicting a pod"}


def calls(*names: str) -> list[Any]:
    """The calls named (all when none), as parameters whose ids are what they do."""
    return [pytest.param(name, id=name) for name in (names or CALLS)]


@contextlib.contextmanager
def adapters(port: int) -> Iterator[tuple[kube.Workloads, kube.ClinicalSLOs, placement.Placement]]:
    configuration = kubernetes.client.Configuration(host=f"http://127.0.0.1:{port}")
    base = kubernetes.client.ApiClient(configuration)
    workloads, records, placer = (kube.Workloads(base, TIMEOUT), kube.ClinicalSLOs(base, TIMEOUT),
                                  placement.Placement(base, TIMEOUT))
    try:
        yield workloads, records, placer
    finally:
        workloads.close()
        records.close()
        placer.close()
        base.close()  # type: ignore[no-untyped-call]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP listener on loopback that accepts every connection and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        for connection in held:
            connection.close()
        listener.close()


@pytest.mark.parametrize("call", calls())
def test_a_silent_api_server_is_a_retryable_error_after_one_read_timeout(silent_port: int, call: str) -> None:
    with adapters(silent_port) as (workloads, records, placer):
        started = time.monotonic()
        with pytest.raises(ports.ApiError) as raised:
            CALLS[call](workloads, records, placer)
        elapsed = time.monotonic() - started
    assert (raised.value.retryable, raised.value.status) == (True, 0)
    assert "no answer from the API server" in str(raised.value)
    # One attempt: well under two read timeouts (urllib3's default retries would make it four).
    assert elapsed < 1.5 * sum(TIMEOUT), elapsed


def test_a_closed_port_is_a_retryable_error_without_an_http_status() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = int(probe.getsockname()[1])
    with adapters(port) as (workloads, _, _), pytest.raises(ports.ApiError) as raised:
        workloads.read("ehr", "Deployment", "ehr-api")
    assert (raised.value.retryable, raised.value.status) == (True, 0)


class Answer:
    """What the fake API server sends to every request, and what it received."""

    def __init__(self) -> None:
        self.status, self.body = 200, b"{}"
        self.requests: list[tuple[str, str, str]] = []

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Answer, int]]:
    """One fake API server for the module; ``answering`` resets what it answers for each test."""
    answer = Answer()

    class Handler(http.server.BaseHTTPRequestHandler):
        def _reply(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            answer.requests.append((self.command, self.path, self.rfile.read(length).decode()))
            self.send_response(answer.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

        do_GET = do_PATCH = do_POST = _reply

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield answer, int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def answering(server: tuple[Answer, int]) -> tuple[Answer, int]:
    answer, port = server
    answer.reset()
    return answer, port


def status_body(code: int, message: str) -> bytes:
    return json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
                       "code": code}).encode()


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        pytest.param(409, True, id="a conflict is tried again"),
        pytest.param(429, True, id="throttling is tried again"),
        pytest.param(500, True, id="a server error is tried again"),
        pytest.param(503, True, id="an unavailable server is tried again"),
        pytest.param(400, False, id="a bad request is not tried again"),
        pytest.param(401, False, id="an unauthenticated request is not tried again"),
        pytest.param(403, False, id="a forbidden request is not tried again"),
        pytest.param(422, False, id="an invalid value is not tried again"),
    ],
)
@pytest.mark.parametrize("call", calls())
def test_an_http_error_is_an_api_error_with_its_status(answering: tuple[Answer, int], call: str, status: int,
                                                       retryable: bool) -> None:
    answer, port = answering
    answer.status, answer.body = status, status_body(status, "told you so")
    with adapters(port) as (workloads, records, placer):
        try:
            CALLS[call](workloads, records, placer)
        except ports.ApiError as error:
            assert (error.status, error.retryable) == (status, retryable)
            assert f"HTTP {status}" in str(error) and "told you so" in str(error)
        else:
            # Only an eviction the disruption budget blocks (429) is an answer, not an error.
            assert (status, call) == (429, "evicting a pod")


@pytest.mark.parametrize("call", calls(*(name for name in CALLS if name not in MISSING_IS_FINE)))
def test_a_missing_object_is_not_found(answering: tuple[Answer, int], call: str) -> None:
    answer, port = answering
    answer.status, answer.body = 404, status_body(404, "gone")
    with adapters(port) as (workloads, records, placer), pytest.raises(ports.NotFound, match="not found"):
        CALLS[call](workloads, records, placer)


@pytest.mark.parametrize("call", calls(*sorted(MISSING_IS_FINE)))
def test_a_missing_pod_schedule_or_clinicalslo_is_nothing_to_do(answering: tuple[Answer, int], call: str) -> None:
    answer, port = answering
    answer.status, answer.body = 404, status_body(404, "gone")
    with adapters(port) as (workloads, records, placer):
        CALLS[call](workloads, records, placer)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"<html>proxy error</html>", id="an HTML page is not the API's answer"),
        pytest.param(b'["a", "list"]', id="a JSON list is not the API's answer"),
        pytest.param(b'{"items": "not a list", "spec": 3, "metadata": []}', id="objects of the wrong shape"),
        pytest.param(b"", id="an empty body is not the API's answer"),
    ],
)
@pytest.mark.parametrize("call", calls())
def test_an_unreadable_answer_is_an_api_error_and_nothing_else(answering: tuple[Answer, int], call: str,
                                                               body: bytes) -> None:
    answer, port = answering
    answer.body = body
    with adapters(port) as (workloads, records, placer):
        try:
            CALLS[call](workloads, records, placer)
        except ports.ApiError as error:
            assert not error.retryable and "unreadable answer" in str(error)
        except ports.NotFound:
            pass  # "no such HPA" and "no such ClinicalSLO" are readings of an answer without items


def test_a_failed_uid_precondition_on_the_scale_subresource_is_not_found_saying_re_created(
        answering: tuple[Answer, int]) -> None:
    answer, port = answering
    answer.status, answer.body = 409, status_body(409, 'Operation cannot be fulfilled on deployments.apps "ehr-api": '
                                                       "Precondition failed: UID in precondition: u-1, UID in object meta: u-2")
    with adapters(port) as (workloads, _, _), pytest.raises(ports.NotFound, match="re-created"):
        workloads.write_field("ehr", "Deployment", "ehr-api", "u-1", "replicas", 5)
    method, path, body = answer.requests[-1]
    assert (method, path) == ("PATCH", "/apis/apps/v1/namespaces/ehr/deployments/ehr-api/scale?fieldManager=healthscale")
    assert json.loads(body) == {"metadata": {"uid": "u-1"}, "spec": {"replicas": 5}}


@pytest.mark.parametrize(
    ("call", "why"),
    [
        pytest.param(lambda w: w.write_field("ehr", "Deployment", "ehr-api", "", "replicas", 5), "no uid",
                     id="a write without a uid is refused before it is sent"),
        pytest.param(lambda w: w.write_field("ehr", "Deployment", "ehr-api", "u", "minReplicas", 5), "healthscale writes",
                     id="minReplicas of a Deployment is refused"),
        pytest.param(lambda w: w.read("ehr", "DaemonSet", "agent"), "not DaemonSet", id="a DaemonSet is refused"),
        pytest.param(lambda w: w.read_field("ehr", "HorizontalPodAutoscaler", "h", "replicas"), "healthscale reads",
                     id="replicas of an HPA is refused"),
    ],
)
def test_a_request_healthscale_does_not_make_is_refused_without_a_call(
        answering: tuple[Answer, int], call: Callable[[kube.Workloads], object], why: str) -> None:
    answer, port = answering
    with adapters(port) as (workloads, _, _), pytest.raises(ports.ApiError, match=why) as raised:
        call(workloads)
    assert (raised.value.retryable, answer.requests) == (False, [])


def test_an_empty_selector_lists_no_pods_and_sends_nothing(answering: tuple[Answer, int]) -> None:
    answer, port = answering
    with adapters(port) as (workloads, _, placer):
        assert workloads.pods("ehr", "") == [] and placer.pods("ehr", "") == []
    assert answer.requests == []


def test_the_old_error_names_are_the_ports_errors() -> None:
    assert kube.TargetNotFound is ports.NotFound and kube.ApiError is ports.ApiError
    assert kube.Target is ports.Target and kube.Floor is ports.Floor
