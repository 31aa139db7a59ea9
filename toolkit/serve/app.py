"""The HTTP API of ``ffkit serve``: :func:`create_app` builds it around one :class:`~.service.Service`.

Endpoints (every error is JSON ``{"error": "..."}``, see :mod:`.errors`)::

    GET  /                    the page (static/index.html; its files under /static/)
    GET  /health              models by role (file, recipe, variant, providers, sha256), version, queue
    GET  /options             the request options of the one declaration, as JSON (the page's form)
    POST /swap                multipart source + target images (+ reference), swap options as
                              form fields (:mod:`.forms`) -> the swapped image, target's format
    POST /compare             the same on both variant sets (``--compare-variant``) -> both images
                              (data URLs) and their figures (:mod:`.compare`)
    POST /jobs                the same with a video target (+ detect_every, smooth) -> 202 {"id": ...}
    GET  /jobs/{id}           status (queued|running|done|failed|cancelled), progress, error, summary
    DELETE /jobs/{id}         cancel a queued or running job (stops at its next frame, no output
                              left), or remove a finished one with its result
    GET  /jobs/{id}/result    the swapped video

Access (:mod:`.access`): with a token, every request but the page, its static files and
``/health`` needs ``Authorization: Bearer <token>`` (401 otherwise).

Limits (:mod:`.limits`): 413 over ``--max-upload-mb`` (checked while the body arrives), 503 with
``Retry-After`` past ``--max-concurrency`` running + ``--max-queue`` waiting.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import shutil
from pathlib import Path
from typing import Optional

from fastapi import Depends, FastAPI, File, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from ffkit.recipes.version import __version__
from ffkit.runtime.media import probe_video, read_image
from ffkit.runtime.swap_options import swap_settings

from .access import TokenGate
from .compare import compare_swaps
from .errors import CatchAll, error_response, install_error_handlers
from .forms import SwapForm, declaration, job_form, swap_form
from .limits import TICKET_KEY, Admission, UploadLimit
from .service import Service
from .settings import ServeSettings
from .uploads import MEDIA_TYPES, save_upload

__all__ = ["create_app"]

log = logging.getLogger("ffkit.serve")

#: The page's files (no build step: served as they are).
STATIC = Path(__file__).resolve().parent / "static"
#: The page may load nothing from anywhere but this server.
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
                                           "connect-src 'self' blob:; script-src 'self'; style-src 'self'; "
                                           "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
                "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


async def _sweep_forever(service: Service) -> None:
    """Expire finished jobs every quarter of the retention time (0.25..30 s)."""
    interval = min(30.0, max(0.25, service.settings.retention_s / 4))
    while True:
        await asyncio.sleep(interval)
        service.jobs.sweep()


def create_app(settings: ServeSettings, service: Optional[Service] = None) -> FastAPI:
    """The FastAPI app for ``settings`` (models are picked and sessions opened here, unless a
    ready ``service`` is passed). The app's shutdown closes the service: workers joined, temp
    folder removed. ``app.state.service`` is the :class:`Service`."""
    service = service if service is not None else Service(settings)
    app = _base_app(settings, service)
    _add_page_routes(app)
    _add_swap_route(app, service)
    _add_compare_route(app, service)
    _add_job_routes(app, service, settings)
    return app


def _base_app(settings: ServeSettings, service: Service) -> FastAPI:
    """The app with its lifespan (the job sweeper; closing the service), error handlers,
    middlewares (admission, upload limit, catch-all) and ``GET /health``."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        sweeper = asyncio.create_task(_sweep_forever(service))
        try:
            yield
        finally:
            sweeper.cancel()
            service.begin_stop()
            await run_in_threadpool(service.close)

    app = FastAPI(title="ffkit serve", version=__version__, lifespan=lifespan,
                  description="Face swapping with ffkit's torch-free runtime.")
    app.state.service = service
    install_error_handlers(app, service.work.root)
    app.add_middleware(Admission, queue=service.queue)          # innermost of the three
    app.add_middleware(UploadLimit, max_bytes=settings.max_upload_bytes, idle_timeout_s=settings.upload_timeout_s)
    app.add_middleware(TokenGate, token=settings.token)          # 401 before a body is read or a place taken
    app.add_middleware(CatchAll)                                 # outermost

    @app.get("/health")
    async def health():
        """Models by role, the providers each session runs on, version, limits, queue, memory."""
        return await run_in_threadpool(service.health)

    return app


def _add_page_routes(app: FastAPI) -> None:
    """``GET /`` (the page), ``/static/...`` (its script and style) and ``GET /options`` (the form's fields)."""

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", media_type="text/html", headers=PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/options")
    async def options():
        """The request options of ``ffkit swap``'s one declaration: name, kind, default, help,
        media (``image``: ``/swap``, ``video``: ``/jobs``), range, choices; the page's form."""
        return declaration()


def _request(form: SwapForm, reference: bool):
    """``(SwapSettings, enhance, frame_enhance)`` of a checked form, as ``ffkit swap`` builds them."""
    settings = swap_settings(form, reference=reference)
    return settings, form["enhance"], form["frame_enhance"]


def _add_swap_route(app: FastAPI, service: Service) -> None:
    """``POST /swap``: an image swapped while the client waits."""

    @app.post("/swap", response_class=Response,
              responses={200: {"content": {t: {} for t in ("image/png", "image/jpeg", "image/webp", "image/bmp")}}})
    async def swap(source: UploadFile = File(..., description="Image with the face to paste (largest face)."),
                   target: UploadFile = File(..., description="Image to change."),
                   reference: Optional[UploadFile] = File(None, description="Swap only faces resembling this one."),
                   form: SwapForm = Depends(swap_form)):
        """Swap the face of ``source`` into ``target``: the pixels ``ffkit swap`` writes for the
        same files and options, encoded in the target's format (upscaled with ``frame_enhance``).
        Headers ``X-Faces-Detected`` and ``X-Faces-Swapped`` count the faces."""
        checked, enhance, frame_enhance = _request(form, False)
        service.engine.pipeline(checked.options, enhance, frame_enhance)  # a role not loaded: 400 now
        folder = service.work.new_folder("swap")
        try:
            src = await save_upload(source, folder, "source", "image")
            tgt = await save_upload(target, folder, "target", "image")
            ref = await save_upload(reference, folder, "reference", "image") if reference is not None else None
            out = folder / f"swapped{tgt.suffix}"
            options = _request(form, ref is not None)[0].options
            summary = await service.queue.run(service.engine.swap_image, src, tgt, out, ref, options, enhance,
                                              frame_enhance)
            body = await run_in_threadpool(out.read_bytes)
        finally:
            await run_in_threadpool(shutil.rmtree, folder, True)
        return Response(body, media_type=MEDIA_TYPES[tgt.suffix],
                        headers={"X-Faces-Detected": str(len(summary.faces)),
                                 "X-Faces-Swapped": str(summary.faces_swapped)})


def _data_url(path: Path) -> str:
    return f"data:{MEDIA_TYPES[path.suffix]};base64,{base64.b64encode(path.read_bytes()).decode()}"


def _add_compare_route(app: FastAPI, service: Service) -> None:
    """``POST /compare``: an image through both variant sets (``--compare-variant``)."""

    @app.post("/compare")
    async def compare(source: UploadFile = File(..., description="Image with the face to paste (largest face)."),
                      target: UploadFile = File(..., description="Image to change."),
                      reference: Optional[UploadFile] = File(None, description="Swap only faces resembling this one."),
                      form: SwapForm = Depends(swap_form)):
        """The swap of ``/swap`` on the server's variant set and on its ``--compare-variant`` set:
        ``{"first": {...}, "second": {...}, "figures": {...}}``, each side with its ``variant``,
        ``image`` (a data URL in the target's format) and face counts; figures: PSNR of the two
        outputs (whole image and face box) and each output face's identity cosine to the source."""
        second = service.compare_engine
        if second is None:
            return error_response(400, "this server runs one variant set: start it with --compare-variant "
                                       "(e.g. --compare-variant int8) to compare two")
        checked, enhance, frame_enhance = _request(form, False)
        for engine in (service.engine, second):
            engine.pipeline(checked.options, enhance, frame_enhance)  # a role not loaded: 400 now
        folder = service.work.new_folder("compare")
        try:
            src = await save_upload(source, folder, "source", "image")
            tgt = await save_upload(target, folder, "target", "image")
            ref = await save_upload(reference, folder, "reference", "image") if reference is not None else None
            options = _request(form, ref is not None)[0].options
            out_a, sum_a, out_b, sum_b, figures = await service.queue.run(
                compare_swaps, service.engine, second, src, tgt, folder, ref, options, enhance, frame_enhance)
            images = await run_in_threadpool(lambda: (_data_url(out_a), _data_url(out_b)))
        finally:
            await run_in_threadpool(shutil.rmtree, folder, True)
        variants = (service.settings.variant or "fp32", service.settings.compare_variant)
        sides = {name: {"variant": variant, "image": image, "faces_detected": len(summary.faces),
                        "faces_swapped": summary.faces_swapped}
                 for name, variant, image, summary in (("first", variants[0], images[0], sum_a),
                                                       ("second", variants[1], images[1], sum_b))}
        return {**sides, "figures": figures}


async def _save_job_inputs(folder, source: UploadFile, target: UploadFile, reference: Optional[UploadFile]):
    """Save a job's uploads into ``folder`` and check them now (bad inputs fail the request, not
    the job): ``(source, target, reference or None, target's video info)``; the folder is
    removed if anything fails."""
    try:
        src = await save_upload(source, folder, "source", "image")
        tgt = await save_upload(target, folder, "target", "video")
        ref = await save_upload(reference, folder, "reference", "image") if reference is not None else None
        await run_in_threadpool(read_image, src)
        if ref is not None:
            await run_in_threadpool(read_image, ref)
        info = await run_in_threadpool(probe_video, tgt)
    except BaseException:
        await run_in_threadpool(shutil.rmtree, folder, True)
        raise
    return src, tgt, ref, info


def _add_job_routes(app: FastAPI, service: Service, settings: ServeSettings) -> None:
    """``POST /jobs``, ``GET /jobs/{id}`` and ``GET /jobs/{id}/result``: videos swapped in the background."""

    @app.post("/jobs", status_code=202)
    async def submit_job(request: Request,
                         source: UploadFile = File(..., description="Image with the face to paste (largest face)."),
                         target: UploadFile = File(..., description="Video to change."),
                         reference: Optional[UploadFile] = File(None, description="Swap only faces like this one."),
                         form: SwapForm = Depends(job_form)):
        """Queue the swap of a video target; poll ``GET /jobs/{id}``, fetch ``/jobs/{id}/result``."""
        checked, enhance, frame_enhance = _request(form, False)
        service.engine.pipeline(checked.options, enhance, frame_enhance)  # before any upload is saved
        folder = service.work.new_folder("job")
        src, tgt, ref, info = await _save_job_inputs(folder, source, target, reference)
        job = service.jobs.new_job(folder, folder / f"result{tgt.suffix}", info.frame_count,
                                   options=form.request_values)
        checked = _request(form, ref is not None)[0]
        workers = settings.frame_workers

        def work(progress):
            return service.engine.swap_video(src, tgt, job.output, ref, checked.options, enhance, frame_enhance,
                                             tracking=checked.tracking, workers=workers, progress=progress)

        service.jobs.submit(job, work, request.scope[TICKET_KEY])
        return JSONResponse({"id": job.id, "status": job.status, "status_url": f"/jobs/{job.id}"},
                            status_code=202, headers={"Location": f"/jobs/{job.id}"})

    def _job(job_id: str):
        job = service.jobs.get(job_id)
        if job is None:
            return None, error_response(404, f"no job {job_id} (unknown, or finished more than "
                                             f"{settings.retention_s:g} s ago and removed)")
        return job, None

    @app.get("/jobs/{job_id}")
    async def job_status(job_id: str):
        """``{"id", "status", "progress": {"frames_done", "frames_total"}, "error", "result", "summary"}``."""
        job, missing = _job(job_id)
        return missing or job.as_dict()

    @app.delete("/jobs/{job_id}")
    async def cancel_job(job_id: str):
        """Cancel a queued or running job: it stops at its next frame, leaves no output, and
        becomes ``cancelled`` (202, the job as ``GET`` shows it); a finished job is removed with
        its result (200)."""
        job, missing = _job(job_id)
        if missing:
            return missing
        if job.finished:
            await run_in_threadpool(service.jobs.remove, job)
            return {"id": job.id, "status": "removed"}
        service.jobs.cancel(job)
        return JSONResponse(job.as_dict(), status_code=202)

    @app.get("/jobs/{job_id}/result", response_class=FileResponse)
    async def job_result(job_id: str):
        """The swapped video of a finished job (409 while it runs or when it failed)."""
        job, missing = _job(job_id)
        if missing:
            return missing
        if job.status in ("failed", "cancelled"):
            return error_response(409, f"job {job_id} {job.status}: {job.error}")
        if job.status != "done" or not job.output.is_file():
            return error_response(409, f"job {job_id} is {job.status} ({job.frames_done}/{job.frames_total} frames)")
        return FileResponse(job.output, media_type=MEDIA_TYPES.get(job.output.suffix, "application/octet-stream"),
                            filename=f"swapped{job.output.suffix}")
