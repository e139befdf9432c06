"""The load test's balancer: one process per pool, forwarding each request to a replica chosen
uniformly at random from the Ready ones.

Random, not round-robin or least-connections, on purpose: splitting a Poisson stream at random
gives each replica a Poisson stream of its share, so each replica stays the M/M/c queue whose knee
``loadtest.knee`` computes (round-robin would smooth arrivals, least-connections would pool the
replicas' queues, and either would move the knee). The pool posts the Ready backends' ports to
``POST /backends`` (a JSON list); with none, requests get 503.
"""

from __future__ import annotations

import argparse
import json
import random

import aiohttp
from aiohttp import web


def app(seed: int) -> web.Application:
    backends: list[int] = []
    draw = random.Random(seed)
    application = web.Application()
    session: dict[str, aiohttp.ClientSession] = {}

    async def start(_: web.Application) -> None:
        session["client"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                                  timeout=aiohttp.ClientTimeout(total=60))

    async def stop(_: web.Application) -> None:
        await session["client"].close()

    async def forward(_: web.Request) -> web.Response:
        if not backends:
            return web.Response(status=503, text="no ready replica")
        port = draw.choice(backends)
        try:
            async with session["client"].get(f"http://127.0.0.1:{port}/") as response:
                return web.Response(status=response.status, body=await response.read())
        except aiohttp.ClientError as error:  # a replica stopped mid-request (scale-down)
            return web.Response(status=502, text=str(error))

    async def set_backends(request: web.Request) -> web.Response:
        backends[:] = [int(port) for port in json.loads(await request.text())]
        return web.Response(text=json.dumps(backends))

    application.on_startup.append(start)
    application.on_cleanup.append(stop)
    application.router.add_get("/", forward)
    application.router.add_post("/backends", set_backends)
    return application


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args()
    web.run_app(app(options.seed), host="127.0.0.1", port=options.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
