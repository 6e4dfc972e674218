"""The validated string types of ``/v1`` requests: patterns and lengths of extensions, contexts, channels...

Each type is a pattern and a length limit (shown in the OpenAPI document)
and, where :mod:`salara.fields` has one, its check after the pattern; a
value that fails either answers 422 ``validation_failed``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Final

from pydantic import AfterValidator, Field

from salara import fields
from salara.events.hub import EVENT_TYPES


def _checked(check: Callable[[str, str], str], name: str) -> AfterValidator:
    """Run a :mod:`salara.fields` check after the pattern; its FieldError becomes a 422."""

    def validate(value: str) -> str:
        try:
            return check(name, value)
        except fields.FieldError as exc:
            raise ValueError(exc.reason) from None

    return AfterValidator(validate)


EXTENSION_PATTERN: Final = r"^[0-9A-Za-z*#+][0-9A-Za-z*#+._\-]*$"
CONTEXT_PATTERN: Final = r"^[0-9A-Za-z_\-][0-9A-Za-z_.\-]*$"
CHANNEL_PATTERN: Final = r"^[A-Za-z][A-Za-z0-9_]*/[!-~]+$"
"""``Tech/resource``; both parts printable ASCII without spaces."""
ENDPOINT_PATTERN: Final = r"^[0-9A-Za-z_.+\-@]+$"
CALL_ID_PATTERN: Final = r"^(?:[A-Za-z0-9_]{1,32}:)?[A-Za-z0-9._\-]{1,64}$"
"""A Linkedid, ``NAME:`` before it on a PBX but ``default`` (:mod:`salara.calls.ids`)."""
EVENT_TYPES_PATTERN: Final = "^({0})(,({0}))*$".format("|".join(EVENT_TYPES))

Extension = Annotated[
    str,
    Field(min_length=1, max_length=fields.MAX_EXTENSION, pattern=EXTENSION_PATTERN),
    _checked(fields.extension, "extension"),
]
Context = Annotated[
    str,
    Field(min_length=1, max_length=fields.MAX_CONTEXT, pattern=CONTEXT_PATTERN),
    _checked(fields.context, "context"),
]
PBX_PATTERN = r"^[A-Za-z0-9_]{1,32}$"
PbxName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=32,
        pattern=PBX_PATTERN,
        description="The PBX: `default` (`[ami]`) or the name of an `[ami NAME]` section. Default: the PBX "
        "whose `contexts` list the request's context, else `default`.",
        examples=["default"],
    ),
]
ChannelName = Annotated[
    str,
    Field(min_length=3, max_length=fields.MAX_CHANNEL, pattern=CHANNEL_PATTERN, examples=["PJSIP/8001-00000004"]),
    _checked(fields.channel, "channel"),
]
CallerIdName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=80,
        pattern=r'^[^\x00-\x1f\x7f"<>\\]+$',
        description="Shown as the caller's name; no quotes, angle brackets, backslashes or control characters.",
        examples=["ACME support"],
    ),
]
VariableName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z][A-Za-z0-9_]*$",
        description="Must also start with [api] variable_prefix (default CRM_).",
    ),
]
"""A plain channel variable: no dialplan functions (``FUNC(...)``), which could write files or run commands,
no leading ``_`` (inheritance into every channel of the call); the route also requires ``[api] variable_prefix``."""
VariableValue = Annotated[
    str,
    Field(
        max_length=255,
        pattern=r'^[^\x00-\x1f\x7f,"\\()\[\]]*$',
        description="No commas, quotes, backslashes, parentheses, brackets or control characters "
        "(Asterisk would split the value, or read a function call into it).",
    ),
]
MessageText = Annotated[
    str,
    Field(
        min_length=1,
        max_length=fields.MAX_MESSAGE_BYTES,
        pattern=r"^[^\x00-\x08\x0a-\x1f\x7f]*$",
        description=f"One line (tabs allowed), at most {fields.MAX_MESSAGE_BYTES} UTF-8 bytes.",
    ),
    _checked(fields.message_text, "text"),
]
