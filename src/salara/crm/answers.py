"""What a CRM's answer to an event post means: taken, or why not.

A 2xx takes the event. So does an answer without an HTTP status line whose
bytes, up to the close, are one JSON object: the old C module never read the
CRM's answer, and CRMs written for it may print a bare ``{"result":0}`` and
close (its sample CRM does). Anything else without a status line (nothing,
text, a reset) is a failure, tried again later.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

from salara.crm.http1 import Answer

ERROR_TEXT_CHARS: Final = 200
"""How much of a refusing answer's body goes to the attempt log."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """``status``: the HTTP status (None: no status line); ``taken``: delivered; ``error``: why not ("")."""

    status: int | None
    taken: bool
    error: str = ""
    legacy: bool = False
    """Taken although the answer had no status line (a bare JSON object, as for the old module)."""
    body: bytes | None = None
    """The answer's body (None: too large, or no answer)."""
    retry_after: bytes | None = None
    """The answer's ``Retry-After`` header, if any."""


def judge(answer: Answer) -> Verdict:
    """The verdict on ``answer`` (see the module doc)."""
    if answer.legacy:
        if answer.body is not None and _is_json_object(answer.body):
            return Verdict(None, True, legacy=True, body=answer.body)
        shown = "(too large)" if answer.body is None else _text(answer.body) or "(nothing)"
        return Verdict(None, False, f"an answer without an HTTP status line: {shown}", body=answer.body)
    status = answer.status
    if status is not None and 200 <= status < 300:
        return Verdict(status, True, body=answer.body)
    text = "(answer too large)" if answer.body is None else _text(answer.body)
    return Verdict(status, False, f"HTTP {status}: {text}", body=answer.body, retry_after=answer.retry_after)


def _is_json_object(body: bytes) -> bool:
    try:
        return isinstance(json.loads(body), dict)
    except ValueError:  # not JSON, or not UTF-8
        return False


def _text(body: bytes) -> str:
    return body[: ERROR_TEXT_CHARS * 4].decode(errors="replace")[:ERROR_TEXT_CHARS]
