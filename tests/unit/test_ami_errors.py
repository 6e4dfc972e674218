"""salara's one error tree (salara.errors): AMI, AGI and request errors."""

from __future__ import annotations

import pytest

from salara import errors
from salara.agi import protocol as agi_protocol


def test_ami_timeout_is_an_ami_error() -> None:
    assert issubclass(errors.AMITimeout, errors.AMIError)
    with pytest.raises(errors.AMIError, match="no answer"):
        raise errors.AMITimeout("Ping: no answer from Asterisk within 1 s")


def test_agi_errors_live_in_the_tree_and_keep_their_shape() -> None:
    assert issubclass(errors.AGICommandError, errors.AGIError)
    assert issubclass(errors.AGIHangup, errors.AGIError)
    assert issubclass(errors.AGIError, errors.SalaraError)
    assert agi_protocol.AGIError is errors.AGIError
    error = errors.AGICommandError(511, "Command Not Permitted on a dead channel", command="EXEC")
    assert (error.code, error.dead_channel) == (511, True)
    assert str(error) == "EXEC: 511 Command Not Permitted on a dead channel"


@pytest.mark.parametrize(
    ("cls", "error_id"),
    [
        (errors.RequestError, "error"),
        (errors.NotFound, "not_found"),
        (errors.Unprocessable, "unprocessable"),
        (errors.Conflict, "conflict"),
    ],
)
def test_request_errors_carry_a_stable_id_message_and_details(cls: type[errors.RequestError], error_id: str) -> None:
    assert issubclass(cls, errors.SalaraError)
    plain = cls("no such call")
    assert (plain.error, plain.message, plain.details, str(plain)) == (error_id, "no such call", {}, "no such call")
    details = {"field": "exten"}
    refined = cls("busy", error="operator_busy", details=details)
    assert (refined.error, refined.details) == ("operator_busy", {"field": "exten"})
    assert refined.details is not details  # a copy: the caller's dict may change later
    assert cls("again").error == error_id  # refining one instance leaves the class alone
