"""The bare baseline of the HTTP benchmarks: an ASGI app that answers the compat JSON, on salara's uvicorn settings.

Run as its own process (the benchmarks start it beside salara)::

    python -m bench.bare --port 5099

It answers every request ``200 {"result":0,"text":"Idle"}`` (what salara
answers to ``{"exten":"9001"}`` on an idle extension) after reading the
body, with no AMI round trip, no middleware and no security: what uvicorn
itself can do on the same settings as ``salara serve`` (uvloop, httptools,
no access log, ``timeout_keep_alive`` 5 s, ``limit_concurrency`` 256). The
ratio salara / bare in one run is what salara keeps of its own server
stack.
"""

from __future__ import annotations

import argparse

from starlette.types import Receive, Scope, Send

ANSWER = b'{"result":0,"text":"Idle"}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(ANSWER)).encode())]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The bare ASGI app: read the request body, answer :data:`ANSWER`."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": ANSWER})


def main(argv: list[str] | None = None) -> None:
    """Serve :func:`app` on 127.0.0.1:``--port`` until SIGTERM."""
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m bench.bare", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        lifespan="off",
        limit_concurrency=256,
        timeout_keep_alive=5,
        server_header=False,
    )


if __name__ == "__main__":
    main()
