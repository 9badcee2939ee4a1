"""``GET /jobs/{ref}/files/{file_id}``: download a file a job of the caller's tenant
recorded (an export's output, an interface run's archived input), streamed.

Tenant-scoped like every job route: another tenant's job, or a file id that is not one of
this job's files, is the same 404 as a job that does not exist. Path-contained: only
files in the tenant's export and interface folders, never through a symlink or ``..``
(:mod:`app.downloads`; 403 otherwise, naming no path). A file recorded but since removed
is 410. Any valid key (viewer and up) may download.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Response, status
from fastapi.responses import StreamingResponse

from app.api.jobs import Caller, own_job
from app.downloads import FileGone, FileRefused, chunks, open_recorded, served_roots

router = APIRouter(tags=["jobs"])


@router.get(
    "/jobs/{ref}/files/{file_id}",
    response_class=Response,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "the file's bytes"},
        403: {"description": "the recorded file lies outside the folders served"},
        404: {"description": "no such job or file in the caller's tenant"},
        410: {"description": "the file no longer exists"},
    },
)
def download_file(ref: str, file_id: int, caller: Caller) -> Response:
    """The file's bytes with its media type and name (``Content-Disposition``)."""
    detail = own_job(ref, caller)
    recorded = next((f for f in detail.files if int(f["id"]) == file_id), None)
    if recorded is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {ref} has no file {file_id}")
    try:
        opened = open_recorded(recorded["uri"], served_roots(caller.tenant))
    except FileRefused as refused:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(refused)) from None
    except FileGone as gone:
        raise HTTPException(status.HTTP_410_GONE, str(gone)) from None
    fallback = opened.name.encode("ascii", "replace").decode().replace('"', "_")
    return StreamingResponse(
        chunks(opened.handle),
        media_type=opened.media_type,
        headers={
            "Content-Length": str(opened.size),
            "Content-Disposition": (
                f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(opened.name)}"
            ),
        },
    )
