"""A real HTTP server on 127.0.0.1 for unit tests of HTTP clients (a fake Prometheus): each GET is
answered by a function of (path, query parameters, headers) -> (status, content type, body)."""

from __future__ import annotations

import http.server
import threading
import urllib.parse
from collections.abc import Callable
from typing import Any

Respond = Callable[[str, dict[str, str], dict[str, str]], tuple[int, str, bytes]]


class LoopbackHttp:
    def __init__(self, respond: Respond) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                url = urllib.parse.urlsplit(self.path)
                status, content_type, body = respond(url.path, dict(urllib.parse.parse_qsl(url.query)),
                                                     dict(self.headers))
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
