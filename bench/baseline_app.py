"""The baseline: a bare aiohttp JSON handler, the ceiling of any aiohttp service on this machine."""

from __future__ import annotations

import sys

from aiohttp import web


async def echo_state(request: web.Request) -> web.Response:
    """Parse a small JSON body and answer with a small JSON object, like a state write."""
    body = await request.json()
    return web.json_response({"id": "dev_baseline", "state": body, "version": 1})


async def read_state(request: web.Request) -> web.Response:
    """Answer a small JSON object, like a device read."""
    return web.json_response({"id": "dev_baseline", "state": {"power": "ON"}, "version": 1})


def main() -> None:
    """Serve on the port given as the only argument."""
    app = web.Application()
    app.router.add_route("PUT", "/state", echo_state)
    app.router.add_post("/state", echo_state)
    app.router.add_get("/state", read_state)
    app.router.add_get("/readyz", read_state)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
