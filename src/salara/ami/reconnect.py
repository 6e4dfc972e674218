"""The AMI client's reconnect loop: one session after another, a jittered backoff between them.

Each session ends with a reason, kept by the caller (``AMIClient.last_error``)
and logged: a refused login at ERROR (it will not heal by itself), an
unreachable or broken link at WARNING, anything else with its traceback. The
loop itself never ends but by cancellation. The wait before the next session
is :func:`salara.backoff.jittered_backoff_s` between ``reconnect_min_s`` and
``reconnect_max_s``; a session that lasted :data:`SESSION_RESET_S` seconds
resets it, its end being a fresh failure.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final

from salara.ami.connect import AMISettings
from salara.backoff import jittered_backoff_s
from salara.errors import AMIError, AuthenticationError, ProtocolError

log = logging.getLogger("salara.ami.client")

SESSION_RESET_S: Final = 30.0
"""A session that lasted this long (seconds) starts the backoff over."""


async def reconnect_forever(
    session: Callable[[], Awaitable[None]],
    settings: AMISettings,
    *,
    failed: Callable[[str], None],
    ended: Callable[[], None],
) -> None:
    """Run ``await session()`` again and again until cancelled.

    ``failed(reason)`` gets each failure as ``"ExceptionName: message"``;
    ``ended()`` runs after every session, however it ended (cancellation
    included), before the backoff.
    """
    attempt = 0
    while True:
        started = time.monotonic()
        try:
            await session()
        except asyncio.CancelledError:
            raise
        except AuthenticationError as exc:
            failed(f"AuthenticationError: {exc}")
            log.error("AMI login refused for user %r: %s", settings.username, exc)
        except (OSError, ProtocolError, AMIError, TimeoutError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
            failed(reason)
            log.warning("AMI %s:%d unavailable: %s", settings.host, settings.port, reason)
        except Exception as exc:
            # Whatever went wrong, the client must live on and try again.
            failed(f"{type(exc).__name__}: {exc}")
            log.exception("AMI session failed unexpectedly; reconnecting")
        finally:
            ended()
        attempt = 0 if time.monotonic() - started > SESSION_RESET_S else attempt + 1
        delay = jittered_backoff_s(attempt, settings.reconnect_min_s, settings.reconnect_max_s)
        log.info("AMI reconnecting in %.2f s", delay)
        await asyncio.sleep(delay)
