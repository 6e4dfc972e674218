"""``/v1/recordings``: a call's recording, as Asterisk's MixMonitor wrote it, with HTTP Range.

Read from ``[recordings] monitor_dir`` (:mod:`salara.recordings.files`),
never through AMI. Two ways in: a token with the right ``recordings`` (every
recording), or a signed link (``?expires=&signature=``, the one ``call.ended``
carries) without any header, for a CRM that fetches ``RECORD_URL`` plainly.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse

from salara.api.v1.calls import CALL_ID
from salara.api.v1.context import RouteContext
from salara.api.v1.errors import ApiError, error_response
from salara.calls.recording import RecordingError

AUDIO: dict[str, dict[str, object]] = {"audio/wav": {}, "audio/x-gsm": {}, "audio/basic": {}, "audio/x-alaw-basic": {}}


def add_routes(router: APIRouter, ctx: RouteContext) -> None:
    """Add ``GET /v1/recordings/{call_id}`` to ``router``."""
    files = ctx.control.recordings

    @router.get(
        "/recordings/{call_id}",
        tags=["recordings"],
        operation_id="getRecording",
        response_class=FileResponse,
        responses={
            200: {"description": "The whole file.", "content": AUDIO},
            206: {"description": "The part a `Range` header asked for.", "content": AUDIO},
            403: error_response("No `recordings` right, or a signed link that expired or does not match."),
            404: error_response("No recording of this call."),
            409: error_response("The call is still going on: its recording is not finished."),
        },
    )
    async def get_recording(
        request: Request,
        call_id: CALL_ID,
        expires: Annotated[
            str | None, Query(max_length=12, pattern=r"^[0-9]+$", description="A signed link's end (Unix s).")
        ] = None,
        signature: Annotated[
            str | None, Query(pattern=r"^[0-9a-fA-F]{64}$", description="A signed link's HMAC-SHA256 (hex).")
        ] = None,
    ) -> FileResponse:
        """The recording of call `call_id` (`Accept-Ranges: bytes`; `Range` answers 206, or 416 beyond the file).

        Content type by the file's format (`audio/wav` for `wav` and `wav49`).
        Recorded by Asterisk's `MixMonitor` with option `b` (only while the
        call was bridged), so its length is the talk time. Without a token,
        `expires` and `signature` of a signed link (as `call.ended`'s
        `recording`) let it through until `expires`.
        """
        if expires is not None or signature is not None:
            problem = files.link_problem(call_id, expires, signature, time.time())
            if problem is not None:
                raise ApiError(403, "link_refused", f"recording link refused: {problem}")
        else:
            ctx.authorize(request, "recordings", None, None)
        try:
            found = files.find(call_id)
        except RecordingError:
            found = None
        if found is None:
            raise ApiError(404, "recording_not_found", f"no recording of call {call_id}")
        call = ctx.control.registry.calls.get(call_id)
        if call is not None and call.ended_at is None:
            raise ApiError(409, "recording_in_progress", f"call {call_id} is still going on: try once it ended")
        path, media_type = found
        return FileResponse(path, media_type=media_type, filename=path.name, content_disposition_type="inline")
