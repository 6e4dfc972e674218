"""Wiring: build every part from the config and run them together."""

from __future__ import annotations

import asyncio
import logging

import uvicorn

from salara.ami.client import AMIClient, AMISettings
from salara.api.app import create_app
from salara.config import Config
from salara.service import Telephony

log = logging.getLogger(__name__)

LOG_LEVELS = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG, 3: logging.DEBUG}
"""``[event] verbose`` 0 off, 1 on, 2 debug, 3 dump -> logging level."""


def setup_logging(verbose: int) -> None:
    logging.basicConfig(
        level=LOG_LEVELS.get(verbose, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def ami_settings(config: Config) -> AMISettings:
    ami = config.ami
    return AMISettings(
        host=ami.host,
        port=ami.port,
        username=ami.username,
        secret=ami.secret,
        auth=ami.auth,
        ping_interval_s=ami.ping_interval,
        reconnect_max_s=ami.reconnect_max,
    )


async def serve(config: Config) -> None:
    """Run salara until SIGINT/SIGTERM: AMI client and HTTP API."""
    ami = AMIClient(ami_settings(config))
    telephony = Telephony(ami, config)
    app = create_app(telephony)
    listen = config.url.rest_server
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=listen.host,
            port=listen.port,
            log_config=None,
            access_log=config.event.verbose >= 2,
            lifespan="off",
            timeout_graceful_shutdown=5,
        )
    )
    log.info("salara starting: API on http://%s, AMI %s:%d", listen, config.ami.host, config.ami.port)
    ami_task = asyncio.create_task(ami.run(), name="ami")
    try:
        await server.serve()
    finally:
        ami_task.cancel()
        await asyncio.wait([ami_task])
    log.info("salara stopped")
