"""The HTTP API. For now: health and `POST /v1/events` through the one ingest path (authentication comes later)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from domain.errors import RejectionCode

from .bootstrap import Services
from .ingest import Source

MAX_BODY_BYTES = 5 * 1024 * 1024
MAX_BATCH_ITEMS = 1000


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"code": code, "message": message}})


def create_app(services: Services) -> FastAPI:
    app = FastAPI(
        title="handoff",
        version="0.1.0",
        description="社区矫正衔接 — inter-agency handoffs in community corrections",
    )
    http_source = Source(name="http")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, "http_error", str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error(422, "invalid_request", str(exc.errors()[:3]))

    @app.get("/health")
    @app.get("/v1/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "store": services.settings.database_url.split(":", 1)[0]}

    @app.post("/v1/events")
    async def post_events(request: Request) -> JSONResponse:
        """One envelope (a JSON object) or a batch (a JSON array of envelopes). Results are per item."""
        body = await request.body()

        async def refuse(status: int, code: RejectionCode, message: str) -> JSONResponse:
            await run_in_threadpool(services.ingestor.refuse, body, code, message, http_source, "body")
            return error(status, str(code), message)

        if len(body) > MAX_BODY_BYTES:
            return await refuse(413, RejectionCode.MALFORMED, f"body is {len(body)} bytes, the limit is {MAX_BODY_BYTES}")
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in ("application/json", "application/x-ndjson", ""):
            return await refuse(415, RejectionCode.MALFORMED, f"content type {content_type!r}: send application/json")
        try:
            document = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            return await refuse(400, RejectionCode.MALFORMED, f"body is not JSON: {exc}")
        if isinstance(document, dict):
            items: list[Any] = [document]
        elif isinstance(document, list):
            if not document:
                return error(400, "empty_batch", "the batch holds no events")
            if len(document) > MAX_BATCH_ITEMS:
                return await refuse(
                    413, RejectionCode.MALFORMED, f"batch of {len(document)} events, the limit is {MAX_BATCH_ITEMS}"
                )
            items = [item if isinstance(item, dict) else json.dumps(item).encode() for item in document]
        else:
            return await refuse(400, RejectionCode.MALFORMED, "body must be an envelope object or an array of them")

        result = await run_in_threadpool(services.ingestor.ingest, items, http_source)
        status = 422 if result.rejected == len(result.items) else 200
        return JSONResponse(
            status_code=status,
            content={
                "accepted": result.accepted,
                "duplicates": result.duplicates,
                "rejected": result.rejected,
                "results": [item.as_dict() for item in result.items],
            },
        )

    return app
