"""The examples of the OpenAPI document: answers by operation, and error bodies by status (webhooks: their module).

:data:`RESPONSES` gives each operation's success answer (by ``operationId``
and status); :data:`ERRORS` the error bodies salara answers, by name;
:data:`STATUS_ERRORS` which of them stand for a status on every operation
that answers it, :data:`OPERATION_ERRORS` those of one operation that differ
(its own 404 and 409 ids). Every example is checked against its schema in
the tests. Bodies of ``/v1`` errors always carry ``details``; those of the
authentication and limit checks (401, 403, 408, 413, 429) carry
``error`` and ``message`` only.
"""

from __future__ import annotations

from typing import Any, Final

from salara.api.v1 import webhook_examples

CALL_ID = "salara-80e54b6ae6dc"

_OPERATOR_CHANNEL = {
    "name": "PJSIP/8001-00000010",
    "uniqueid": CALL_ID,
    "state": "Up",
    "state_code": 6,
    "caller_number": "8001",
    "caller_name": "ACME",
    "connected_number": "9001",
    "connected_name": None,
    "context": "phones",
    "exten": "9001",
    "created_at": "2026-11-29T16:41:42.901Z",
    "answered_at": "2026-11-29T16:41:43.640Z",
}
_PLACED = {
    "id": CALL_ID,
    "pbx": "default",
    "state": "dialing",
    "from": "8001",
    "to": "9001",
    "context": "phones",
    "placed_by_salara": True,
    "created_at": "2026-11-29T16:41:42.901Z",
    "answered_at": None,
    "ended_at": None,
    "channels": [],
    "outcome": None,
    "client_state": "lead-4711",
}
_UP = {**_PLACED, "state": "up", "answered_at": "2026-11-29T16:41:44.377Z", "channels": [_OPERATOR_CHANNEL]}
_ENDED = {
    **_UP,
    "state": "ended",
    "ended_at": "2026-11-29T16:41:49.494Z",
    "channels": [],
    "outcome": {
        "result": "answered",
        "reason": "Dial ANSWER",
        "originate_reason": 4,
        "originate_reason_text": "answered",
        "hangup_cause": 16,
        "hangup_cause_text": "Normal Clearing",
        "dial_status": "ANSWER",
        "operator": {
            "result": "answered",
            "reason": "OriginateResponse Success, Reason 4 (answered)",
            "originate_reason": 4,
            "originate_reason_text": "answered",
        },
    },
}

RESPONSES: Final[dict[str, dict[str, Any]]] = {
    "getRecording": {"200": "(the file: RIFF....WAVEfmt ...)", "206": "(the bytes of the Range asked for)"},
    "getHealth": {"200": {"status": "ok"}},
    "getReadiness": {
        "200": {
            "status": "ready",
            "ami": {"host": "127.0.0.1", "port": 5038, "last_error": None},
            "outbox": {"recovered_from": None},
        },
        "503": {"status": "unready"},
    },
    "listTrackedCalls": {
        "200": [{"linkedid": CALL_ID, "caller": "8001", "exten": "9001", "source": "makecall", "channels": 2}]
    },
    "forgetTrackedCall": {"200": {"forgotten": CALL_ID}},
    "getMetrics": {
        "200": "# HELP salara_ami_up 1 while AMI is logged in and Asterisk fully booted\n"
        "# TYPE salara_ami_up gauge\nsalara_ami_up 1.0\n"
    },
    "placeCall": {"201": _PLACED},
    "listCalls": {"200": {"calls": [_UP]}},
    "getCall": {"200": _ENDED},
    "transferCall": {"202": {"id": CALL_ID, "channel": "PJSIP/9001-00000011", "to": "9002", "context": "phones"}},
    "sendMessage": {"200": {"accepted": True, "reason": None}},
    "getExtensionState": {
        "200": {
            "exten": "8001",
            "context": "phones",
            "pbx": "default",
            "hint": "PJSIP/8001",
            "state": 0,
            "state_text": "Idle",
            "available": True,
        }
    },
    "getEndpoint": {
        "200": {
            "name": "8001",
            "registered": True,
            "reachability": "reachable",
            "rtt_ms": 0.415,
            "device_state": "Not in use",
            "active_channels": 0,
            "contacts": [
                {
                    "uri": "sip:8001-0x5637cc8a78c0@127.0.0.1:5070",
                    "user_agent": "baresip v1.1.0 (x86_64/linux)",
                    "status": "Reachable",
                    "rtt_ms": 0.415,
                    "via": None,
                    "expires_at": "2026-11-29T17:41:40Z",
                }
            ],
        }
    },
    "getChannel": {
        "200": {
            "name": "PJSIP/8001-00000010",
            "uniqueid": CALL_ID,
            "linkedid": CALL_ID,
            "state": "Up",
            "state_code": 6,
            "caller_number": "8001",
            "caller_name": "ACME",
            "connected_number": "9001",
            "connected_name": None,
            "context": "phones",
            "exten": "9001",
            "priority": 2,
            "application": "Dial",
            "application_data": "PJSIP/9001,30",
            "duration_s": 7,
            "bridge_id": "8e1f0a2c-6b4d-4f21-9a43-0c5d7e9b1f20",
        }
    },
    "streamEvents": {
        "200": "retry: 2000\n\n"
        "id: 5ada9f2bae854926a4675f0a95327914\nevent: Hangup\n"
        'data: {"event":"Hangup","chan":"PJSIP/8001-00000010","caller":"8001","exten":"9001","state":"UP",'
        f'"uniqueid":"{CALL_ID}","linkedid":"{CALL_ID}","pbx":"default","tracked":true,'
        '"timestamp":"2026-11-29T16:41:49.494Z","id":"5ada9f2bae854926a4675f0a95327914"}\n\n'
        ": heartbeat\n\n"
    },
}
"""Success answers: ``operationId`` -> status -> the body (text for text/plain and text/event-stream)."""


def _v1(error: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": error, "message": message, "details": details}


def _denied(error: str, message: str) -> dict[str, Any]:
    return {"error": error, "message": message}


ERRORS: Final[dict[str, tuple[str, dict[str, Any]]]] = {
    # the authentication and limit checks, in front of every route
    "token_required": (
        "No token presented",
        _denied("unauthorized", "an API token is required (Authorization: Bearer <token> or X-API-Key)"),
    ),
    "invalid_token": ("An unknown or revoked token", _denied("unauthorized", "invalid API token")),
    "missing_right": ("The token lacks the right", _denied("forbidden", "token 'crm' lacks the 'call' right")),
    "not_loopback": (
        "No token configured and the client is not on this machine",
        _denied("forbidden", "only clients on this machine (loopback) are served while no API token is configured"),
    ),
    "context_refused": (
        "A context outside the token's contexts",
        _denied("forbidden", "token 'crm' may not use context 'international'"),
    ),
    "destination_refused": (
        "A number outside the token's destinations",
        _denied("forbidden", "token 'crm' may not dial '810441234567' (not in its destinations)"),
    ),
    "request_timeout": (
        "The body came too slowly",
        _denied("request_timeout", "the request body did not arrive within 10 s"),
    ),
    "payload_too_large": (
        "A body over [api] max_body_bytes",
        _denied("payload_too_large", "body larger than 65536 bytes"),
    ),
    "rate_limited": (
        "The token's rate is used up (see Retry-After)",
        _denied("rate_limited", "token 'crm' is over its rate of 10/60; retry in 6 s"),
    ),
    # /v1
    "validation_failed": (
        "A field does not validate (one details entry per problem)",
        _v1(
            "validation_failed",
            "invalid request: body.to: String should match pattern '^[0-9A-Za-z*#+][0-9A-Za-z*#+._\\-]*$'",
            [{"loc": ["body", "to"], "msg": "String should match pattern", "type": "string_pattern_mismatch"}],
        ),
    ),
    "variable_prefix": (
        "A variable outside [api] variable_prefix",
        _v1(
            "validation_failed",
            "invalid request: variables BRIDGE_FEATURES must start with 'CRM_' ([api] variable_prefix), not with '_'",
            [
                {
                    "loc": ["body", "variables", "BRIDGE_FEATURES"],
                    "msg": "must start with 'CRM_' ([api] variable_prefix), not with '_'",
                    "type": "variable_prefix",
                }
            ],
        ),
    ),
    "no_such_extension": (
        "`to` does not exist in the context",
        _v1(
            "no_such_extension",
            "9999@phones does not exist: the call was not placed",
            {"to": "9999", "context": "phones", "asterisk": "Extension does not exist."},
        ),
    ),
    "call_not_found": (
        "No such call (or not one the token sees)",
        _v1("call_not_found", f"no call {CALL_ID} (unknown, or ended too long ago)"),
    ),
    "channel_not_found": (
        "The call has no such live channel",
        _v1("channel_not_found", f"call {CALL_ID} has no live channel PJSIP/8002-00000003"),
    ),
    "no_hint": (
        "No such extension, or it has no hint",
        _v1("not_found", "no hint for 8009@phones (no such extension, or it has no hint)"),
    ),
    "no_endpoint": (
        "No such PJSIP endpoint",
        _v1("not_found", "no PJSIP endpoint 8009", {"asterisk": "Unable to retrieve endpoint 8009"}),
    ),
    "no_channel": ("Asterisk has no such channel", _v1("not_found", "no channel PJSIP/8001-00000099")),
    "operator_unavailable": (
        "The operator's extension state is not good: nothing was done",
        _v1(
            "operator_unavailable",
            "extension 8001 is InUse: the call was not placed",
            {"from": "8001", "state": 1, "state_text": "InUse"},
        ),
    ),
    "message_operator_unavailable": (
        "The operator's extension state is not good: nothing was sent",
        _v1(
            "operator_unavailable",
            "extension 8001 is Unavailable: the message was not sent",
            {"to": "8001", "state": 4, "state_text": "Unavailable"},
        ),
    ),
    "idempotency_key_reused": (
        "The Idempotency-Key came with another request",
        _v1(
            "idempotency_key_reused",
            "this Idempotency-Key was used for a different request",
            {"idempotency_key": "crm-click-4711"},
        ),
    ),
    "call_ended": ("The call has ended", _v1("call_ended", f"call {CALL_ID} has ended")),
    "call_not_connected": (
        "The call has no channel yet",
        _v1("call_not_connected", f"call {CALL_ID} has no channel yet"),
    ),
    "transfer_refused": (
        "Asterisk would not redirect",
        _v1(
            "transfer_refused",
            "Asterisk refused the transfer: Channel not found",
            {"channel": "PJSIP/9001-00000011", "asterisk": "Channel not found"},
        ),
    ),
    "asterisk_refused": (
        "Asterisk refused an action salara expected it to take",
        _v1(
            "asterisk_refused",
            "Asterisk refused Originate: Originate failed",
            {"action": "Originate", "asterisk": "Originate failed"},
        ),
    ),
    "ami_unavailable": (
        "AMI is not connected: nothing was sent",
        _v1("ami_unavailable", "Asterisk (AMI) is not connected"),
    ),
    "asterisk_timeout": (
        "Asterisk did not answer in time",
        _v1("asterisk_timeout", "Originate: no answer from Asterisk within 10 s"),
    ),
    "no_tracked_call": ("salara tracks no such call", _denied("not_found", "no such tracked call")),
    "link_refused": (
        "A signed recording link that expired or does not match",
        _v1("link_refused", "recording link refused: the link expired"),
    ),
    "recording_not_found": ("No recording of the call", _v1("recording_not_found", f"no recording of call {CALL_ID}")),
    "recording_in_progress": (
        "The call is still going on",
        _v1("recording_in_progress", f"call {CALL_ID} is still going on: try once it ended"),
    ),
    "too_many_subscribers": (
        "Too many live streams (see Retry-After)",
        _v1("too_many_subscribers", "this client has 8 live event streams open already"),
    ),
}
"""Error bodies by name: (summary, body)."""

STATUS_ERRORS: Final[dict[int, tuple[str, ...]]] = {
    401: ("token_required", "invalid_token"),
    403: ("missing_right", "not_loopback"),
    408: ("request_timeout",),
    413: ("payload_too_large",),
    422: ("validation_failed",),
    429: ("rate_limited",),
    502: ("asterisk_refused",),
    503: ("ami_unavailable",),
    504: ("asterisk_timeout",),
}
"""The errors of a status on every operation that answers it, unless :data:`OPERATION_ERRORS` says otherwise."""

_CALL_403 = ("missing_right", "context_refused", "destination_refused", "not_loopback")
OPERATION_ERRORS: Final[dict[str, dict[int, tuple[str, ...]]]] = {
    "placeCall": {
        403: _CALL_403,
        409: ("operator_unavailable", "idempotency_key_reused"),
        422: ("validation_failed", "variable_prefix", "no_such_extension"),
    },
    "getCall": {404: ("call_not_found",)},
    "hangUpCall": {404: ("call_not_found",), 409: ("call_ended", "call_not_connected")},
    "transferCall": {
        403: _CALL_403,
        404: ("call_not_found", "channel_not_found"),
        409: ("call_ended", "call_not_connected", "transfer_refused"),
    },
    "sendMessage": {403: _CALL_403, 409: ("message_operator_unavailable",)},
    "getExtensionState": {404: ("no_hint",)},
    "getEndpoint": {404: ("no_endpoint",)},
    "getChannel": {404: ("no_channel",)},
    "streamEvents": {503: ("too_many_subscribers",)},
    "forgetTrackedCall": {404: ("no_tracked_call",)},
    "getRecording": {
        403: ("missing_right", "not_loopback", "link_refused"),
        404: ("recording_not_found",),
        409: ("recording_in_progress",),
    },
}
"""An operation's own errors by status (replacing :data:`STATUS_ERRORS` for that status)."""

# The webhook operations' examples live beside their data.
RESPONSES.update(webhook_examples.RESPONSES)
ERRORS.update(webhook_examples.ERRORS)
OPERATION_ERRORS.update(webhook_examples.OPERATION_ERRORS)
