"""Standard Webhooks signatures: the published test vector, verification, plain secrets."""

from __future__ import annotations

import base64

import pytest

from salara.crm.signing import secret_key, sign, verify
from tests.unit.crm_server import SECRET


def test_signature_matches_the_standard_webhooks_test_vector() -> None:
    # The published vector of the Standard Webhooks reference libraries.
    assert (
        sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            b'{"test": 2432232314}',
        )
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_verify_accepts_the_right_secret_only() -> None:
    body = b'{"event":"Hangup"}'
    now = 1_700_000_000
    headers = {"Webhook-Id": "e1", "Webhook-Timestamp": str(now), "Webhook-Signature": sign(SECRET, "e1", now, body)}
    assert verify(SECRET, headers, body, now=now)
    assert not verify("whsec_" + base64.b64encode(b"another key").decode(), headers, body, now=now)
    assert not verify(SECRET, headers, body + b" ", now=now)
    assert not verify(SECRET, {**headers, "Webhook-Id": "e2"}, body, now=now)
    assert not verify(SECRET, headers, body, now=now + 301)  # replayed later
    assert verify(SECRET, headers, body, now=now + 299)
    assert not verify(SECRET, {"webhook-id": "e1"}, body, now=now)
    assert not verify(SECRET, {**headers, "Webhook-Timestamp": "soon"}, body, now=now)
    several = {**headers, "Webhook-Signature": "v1,bm9wZQ== " + headers["Webhook-Signature"]}
    assert verify(SECRET, several, body, now=now)


def test_plain_secrets_are_their_utf8_bytes() -> None:
    assert secret_key("s3cret") == b"s3cret"
    assert secret_key(SECRET) == b"0123456789abcdef0123456789abcdef"
    assert sign("s3cret", "e", 1, b"{}") == sign("whsec_" + base64.b64encode(b"s3cret").decode(), "e", 1, b"{}")
    with pytest.raises(ValueError):
        secret_key("whsec_not base64!")
