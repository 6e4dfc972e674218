"""check_request keeps the requests it decoded, per config: polls repeat the same few bodies."""

from __future__ import annotations

import logging

import pytest

from salara import config
from salara.api.compat import endpoint
from salara.api.compat.endpoint import Answer, CompatCall, check_request
from salara.api.compat.request import ExtensionStateQuery
from salara.api.security.tokens import LOOPBACK


def call(body: bytes, query: bytes = b"") -> CompatCall:
    return CompatCall("POST", "/", "127.0.0.1", query, "application/json", body, LOOPBACK)


def test_a_reload_decodes_the_same_body_under_the_new_config() -> None:
    phones = config.load(None, environ={"SALARA_GENERAL_DEFAULT_CONTEXT": "phones"})
    sim = config.load(None, environ={"SALARA_GENERAL_DEFAULT_CONTEXT": "sim"})
    poll = call(b'{"exten":"9001"}')
    assert check_request(poll, phones) == ExtensionStateQuery("9001", "phones")
    assert check_request(poll, phones) == ExtensionStateQuery("9001", "phones")
    assert check_request(poll, sim) == ExtensionStateQuery("9001", "sim")
    assert check_request(call(b"", b"exten=9001"), sim) == ExtensionStateQuery("9001", "sim")


def test_a_refused_request_is_refused_and_logged_every_time(caplog: pytest.LogCaptureFixture) -> None:
    loaded = config.load(None, environ={})
    bad = call(b'{"exten":"90\\r01"}')
    with caplog.at_level(logging.INFO, logger="salara.api.compat.endpoint"):
        answers = [check_request(bad, loaded) for _ in range(3)]
    assert all(isinstance(a, Answer) and a.status == 400 for a in answers)
    assert sum("compat request refused (400)" in r.getMessage() for r in caplog.records) == 3


def test_the_decoded_requests_kept_are_bounded() -> None:
    loaded = config.load(None, environ={})
    for n in range(endpoint.MAX_PARSED + 50):
        assert check_request(call(b'{"exten":"%d"}' % (1000 + n)), loaded) == ExtensionStateQuery(
            str(1000 + n), loaded.general.default_context
        )
    assert endpoint._parsed_of is not None
    assert len(endpoint._parsed_of[1]) == endpoint.MAX_PARSED
    big = call(b'{"exten":"9001","pad":"' + b"x" * endpoint.MAX_PARSED_BODY + b'"}')
    assert isinstance(check_request(big, loaded), ExtensionStateQuery)
    assert (big.body, big.query_string, big.content_type) not in endpoint._parsed_of[1]
