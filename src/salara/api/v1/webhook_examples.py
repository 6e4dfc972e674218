"""The OpenAPI examples of ``/v1/webhooks`` and ``/v1/event-log`` (merged into :mod:`salara.api.v1.examples`)."""

from __future__ import annotations

from typing import Any, Final

_EVENT_ID = "5ada9f2bae854926a4675f0a95327914"
_CALL_ID = "1795962284.27"
_ENDPOINT: Final[dict[str, Any]] = {
    "name": "crm",
    "url": "https://crm.example.com/salara/events",
    "events": ["call.ended", "Hangup"],
    "payload": "extended",
    "signed": True,
    "enabled": True,
    "disabled_at": None,
    "disabled_reason": None,
    "counts": {"pending": 0, "retrying": 1, "sending": 0, "dead": 1, "delivered": 240},
}
_DELIVERY: Final[dict[str, Any]] = {
    "id": _EVENT_ID,
    "seq": 4711,
    "type": "call.ended",
    "call_id": _CALL_ID,
    "status": "dead",
    "stored_at": "2026-11-29T16:41:49.494Z",
    "next_attempt_at": None,
    "done_at": "2026-11-29T16:42:03.120Z",
    "tries": 5,
    "attempts": [
        {
            "at": "2026-11-29T16:41:49.501Z",
            "outcome": "retry",
            "http_status": 400,
            "latency_ms": 12.4,
            "answer": '{"error":"unknown field talk_s"}',
            "error": 'HTTP 400: {"error":"unknown field talk_s"}',
        }
    ],
}

RESPONSES: Final[dict[str, dict[str, Any]]] = {
    "listWebhooks": {
        "200": {"webhooks": [{**_ENDPOINT, "name": "default", "events": [], "payload": "compat"}, _ENDPOINT]}
    },
    "getWebhook": {"200": _ENDPOINT},
    "putWebhook": {"200": {**_ENDPOINT, "counts": dict.fromkeys(_ENDPOINT["counts"], 0)}},
    "enableWebhook": {"200": _ENDPOINT},
    "listDeliveries": {"200": {"deliveries": [_DELIVERY], "next": None}},
    "retryDelivery": {"200": {"queued": 1}},
    "replayDeliveries": {"200": {"queued": 37}},
    "readEventLog": {
        "200": {
            "events": [
                {
                    "seq": 4711,
                    "id": _EVENT_ID,
                    "type": "Hangup",
                    "call_id": _CALL_ID,
                    "stored_at": "2026-11-29T16:41:49.494Z",
                    "event": {
                        "event": "Hangup",
                        "chan": "PJSIP/8001-00000010",
                        "caller": "8001",
                        "exten": "9001",
                        "state": "UP",
                        "uniqueid": _CALL_ID,
                        "linkedid": _CALL_ID,
                        "pbx": "default",
                        "tracked": True,
                        "timestamp": "2026-11-29T16:41:49.494Z",
                        "id": _EVENT_ID,
                    },
                }
            ],
            "next": 4711,
        }
    },
}
"""Success answers by ``operationId``."""

ERRORS: Final[dict[str, tuple[str, dict[str, Any]]]] = {
    "no_webhook": (
        "No such endpoint",
        {"error": "not_found", "message": "no webhook endpoint 'crm2'", "details": None},
    ),
    "no_delivery": (
        "No delivery of that event that is done or waiting",
        {
            "error": "not_found",
            "message": f"no delivery of event '{_EVENT_ID}' to 'crm' that is done or waiting",
            "details": None,
        },
    ),
}
"""Error bodies by example name: (summary, body)."""

_NOT_FOUND: Final[dict[int, tuple[str, ...]]] = {404: ("no_webhook",)}
OPERATION_ERRORS: Final[dict[str, dict[int, tuple[str, ...]]]] = {
    "getWebhook": _NOT_FOUND,
    "deleteWebhook": _NOT_FOUND,
    "enableWebhook": _NOT_FOUND,
    "listDeliveries": _NOT_FOUND,
    "retryDelivery": {404: ("no_webhook", "no_delivery")},
    "replayDeliveries": _NOT_FOUND,
}
"""Each operation's own errors by status."""
