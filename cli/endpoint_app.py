"""The prediction endpoint's web app (Starlette), served by ``imori serve`` through uvicorn.

``POST /predict`` takes images as multipart fields named ``file`` and answers
``{"checkpoint": {...}, "predictions": [...]}``, each prediction ``Prediction.to_dict()``
of the same ``core.predict.Predictor`` that ``imori predict --json`` prints (calibrated
probabilities, "not sure", the operating point's answer, warnings such as "far from the
training images"). ``GET /health`` says it is up; ``GET /openapi.json`` describes the API;
``GET /`` is a page about it with an upload form (plain HTML: no CDN, no script).
Building the app loads nothing and listens on nothing: ``build_app`` takes a ready Predictor.
"""

from __future__ import annotations

import hmac
import html
import json
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from core.predict import Predictor, calibrated
from core.text import plural

MB = 1024 * 1024
MAX_REQUEST_BYTES = 20 * MB  # the dashboard's limit for one uploaded image
MAX_FILES = 64  # images in one request: `imori predict`'s batch
TOKEN_VARIABLE = "IMORI_SERVE_TOKEN"


class Refused(Exception):
    """A request answered with ``status`` and a one-line ``reason``."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def checkpoint_facts(predictor: Predictor, path: str, run: int | None = None) -> dict[str, Any]:
    """What a client should know of the model that answers: its file, run, model, classes
    (output order), calibration (temperature, thresholds), answer rule and input size."""
    prep = predictor.preprocessing
    return {
        "path": path,
        "run": run,
        "model": predictor.checkpoint.model_name,
        "classes": list(predictor.classes),
        "calibrated": calibrated(predictor.calibration),
        "temperature": predictor.temperature,
        "thresholds": predictor.thresholds or None,
        "min_confidence": predictor.min_confidence,
        "none_of_these_threshold": predictor.ood_reference,
        "test_time_augmentation": predictor.views if len(predictor.views) > 1 else None,
        "input_size": {"height": prep.height, "width": prep.width, "channels": prep.channels},
    }


def build_app(predictor: Predictor, facts: dict[str, Any], *, token: str | None = None,
              max_bytes: int = MAX_REQUEST_BYTES, top_k: int = 3) -> Starlette:
    """The endpoint for ``predictor`` (``facts``: ``checkpoint_facts``). ``token``: when
    set, ``POST /predict`` needs ``Authorization: Bearer <token>`` (401 otherwise).
    ``max_bytes``: a larger request body is refused with 413 before it is all read."""

    async def predict(request: Request) -> Response:
        try:
            if token and not _authorised(request, token):
                raise Refused(401, f"give the token ({TOKEN_VARIABLE}) as 'Authorization: Bearer <token>'")
            uploads = await _uploads(request, max_bytes)
            names = [upload.filename or f"image {i + 1}" for i, upload in enumerate(uploads)]
            data = [await upload.read() for upload in uploads]
        except Refused as refused:
            headers = {"WWW-Authenticate": "Bearer"} if refused.status == 401 else None
            return JSONResponse({"error": refused.reason}, refused.status, headers=headers)
        predictions = await run_in_threadpool(predictor.predict, data, top_k, names)
        body = {"checkpoint": facts, "predictions": [p.to_dict() for p in predictions]}
        bad = [f"{p.source}: {p.error.removeprefix('uploaded image: ')}" for p in predictions if p.error]
        if bad:  # the readable images' answers still come back
            body["error"] = f"{len(bad)} of {plural(len(predictions), 'image')} could not be read: " + "; ".join(bad)
            return JSONResponse(body, 422)
        return JSONResponse(body)

    async def health(request: Request) -> Response:  # noqa: ARG001
        return JSONResponse({"status": "ok", "model": facts["model"], "classes": len(facts["classes"])})

    async def openapi(request: Request) -> Response:  # noqa: ARG001
        return JSONResponse(openapi_schema(facts, max_bytes, token is not None))

    async def page(request: Request) -> Response:  # noqa: ARG001
        return HTMLResponse(api_page(facts, max_bytes, token is not None))

    return Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/health", health),
                             Route("/openapi.json", openapi), Route("/", page)])


def _authorised(request: Request, token: str) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


async def _uploads(request: Request, max_bytes: int) -> list[UploadFile]:
    """The request's ``file`` fields, its body read up to ``max_bytes`` (Refused 413 beyond;
    400 for a body that is not multipart form data or holds no ``file`` field)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise Refused(413, f"the request is {int(declared) / MB:.3g} MB; at most {max_bytes / MB:.3g} MB is taken")
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise Refused(400, "post the images as multipart/form-data, each in a field named 'file'")
    body = bytearray()
    async for chunk in request.stream():  # a client may not say its length, or lie about it
        body += chunk
        if len(body) > max_bytes:
            raise Refused(413, f"the request is over {max_bytes / MB:.3g} MB, the most taken")

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": bytes(body), "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=MAX_FILES, max_fields=MAX_FILES)
    except MultiPartException as err:
        raise Refused(400, f"the multipart body cannot be read: {err.message}") from None
    uploads = [value for value in form.getlist("file") if isinstance(value, UploadFile)]
    if not uploads:
        raise Refused(400, "no image: post each one as a file in a multipart field named 'file'")
    return uploads


def openapi_schema(facts: dict[str, Any], max_bytes: int, secured: bool) -> dict[str, Any]:
    """The API as OpenAPI 3.1 (a dict)."""
    prediction = {
        "type": "object",
        "description": "the object `imori predict --json` prints for the image",
        "properties": {
            "source": {"type": "string", "description": "the file name given"},
            "answer": {"type": ["string", "null"], "description": "the label, or 'not sure' below min_confidence"},
            "label": {"type": ["string", "null"], "description": "by the operating point when there is one, else "
                                                                 "the likeliest class"},
            "sure": {"type": ["boolean", "null"], "description": "whether the label reaches min_confidence; "
                                                               "null for an image that could not be read"},
            "top": {"type": "array", "items": {"type": "object", "properties": {
                "class": {"type": "string"}, "probability": {"type": "number"}}}},
            "probabilities": {"type": "object", "additionalProperties": {"type": "number"},
                              "description": "every class's (calibrated, when the checkpoint is) probability"},
            "error": {"type": ["string", "null"], "description": "why the image could not be read"},
            "warnings": {"type": "array", "items": {"type": "string"},
                         "description": "how it differs from the training images"},
        },
    }
    error = {"type": "object", "properties": {"error": {"type": "string"}}}
    answer = {"type": "object", "properties": {"checkpoint": {"type": "object"},
                                               "predictions": {"type": "array", "items": prediction},
                                               "error": {"type": "string"}}}
    post: dict[str, Any] = {
        "summary": f"classify images with {facts['model']} ({len(facts['classes'])} classes)",
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
            "type": "object", "properties": {"file": {"type": "array", "items": {"type": "string",
                                                                                 "format": "binary"}}},
            "required": ["file"]}}},
            "description": f"one or more images (JPEG, PNG, TIFF, BMP, WebP, HEIC, ...), at most "
                           f"{max_bytes / MB:.3g} MB in all and {MAX_FILES} files"},
        "responses": {
            "200": {"description": "each image's prediction", "content": {"application/json": {"schema": answer}}},
            "400": {"description": "not multipart form data, or no 'file' field",
                    "content": {"application/json": {"schema": error}}},
            "401": {"description": "the bearer token is missing or wrong", "content": {"application/json":
                                                                                       {"schema": error}}},
            "413": {"description": "the request is too large", "content": {"application/json": {"schema": error}}},
            "422": {"description": "an image could not be read (the others' predictions still come back)",
                    "content": {"application/json": {"schema": answer}}},
        },
    }
    schema: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "imori prediction endpoint", "version": "1"},
        "paths": {
            "/predict": {"post": post},
            "/health": {"get": {"summary": "whether the endpoint is up", "responses": {"200": {
                "description": "ok", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
        },
    }
    if secured:
        schema["components"] = {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}}
        post["security"] = [{"bearer": []}]
    return schema


def api_page(facts: dict[str, Any], max_bytes: int, secured: bool) -> str:
    """The page at ``/``: what the endpoint serves, how to call it, and a form to try it
    (self-contained: no script, no stylesheet from elsewhere)."""
    e = html.escape
    auth = ' -H "Authorization: Bearer $IMORI_SERVE_TOKEN"' if secured else ""
    form = ("<p>A token is required, so the form below cannot be used from a browser: use curl.</p>" if secured else
            '<form action="/predict" method="post" enctype="multipart/form-data">'
            '<input type="file" name="file" multiple accept="image/*"> <button>Predict</button></form>')
    facts_json = e(json.dumps(facts, indent=2))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>imori: {e(facts['model'])} endpoint</title>
<style>body{{font-family:sans-serif;max-width:50em;margin:2em auto;line-height:1.4}}
pre{{background:#f4f4f4;padding:.8em;overflow-x:auto}}code{{background:#f4f4f4}}</style></head>
<body><h1>imori prediction endpoint</h1>
<p><b>{e(facts['model'])}</b>, {len(facts['classes'])} classes: {e(', '.join(facts['classes']))}.</p>
<h2>POST /predict</h2>
<p>Images as <code>multipart/form-data</code> fields named <code>file</code> (one or more, at most
{max_bytes / MB:.3g} MB in all). The answer is <code>{{"checkpoint": {{...}}, "predictions": [...]}}</code>,
each prediction what <code>imori predict --json</code> prints for that image. An image that cannot be
read gets 422 with the reason; a request too large, 413{'; a missing or wrong token, 401' if secured else ''}.</p>
<pre>curl{auth} -F file=@cat.jpg -F file=@dog.png http://HOST:PORT/predict</pre>
{form}
<h2>GET /health</h2><p><code>{{"status": "ok", ...}}</code> while it serves.</p>
<h2>GET /openapi.json</h2><p>This API as <a href="/openapi.json">OpenAPI 3.1</a>.</p>
<h2>The checkpoint</h2><pre>{facts_json}</pre>
</body></html>
"""
