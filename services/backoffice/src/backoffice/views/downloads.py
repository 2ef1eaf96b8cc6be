"""CSV downloads: the API's own `text/csv` answer, passed to the browser as a file."""

from __future__ import annotations

from typing import Any

from fastapi.responses import Response

from backoffice.web import PageContext


async def csv_download(
    page: PageContext, path: str, filename: str, params: dict[str, Any]
) -> Response:
    upstream = await page.api.csv(path, **params)
    safe_name = "".join(ch for ch in filename if ch.isalnum() or ch in "-_") or "report"
    return Response(
        upstream.content,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{safe_name}.csv"'},
    )
