"""``ffkit serve``: the swap pipeline as an HTTP service (registered on the app).

Torch-free; needs the ``serve`` extra (FastAPI, uvicorn, python-multipart). The models are picked
once at start as ``ffkit swap`` picks them (every optional role the folder has: enhancer,
landmarker, parser, frame enhancers), one session each, shared by every request.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Optional

import typer

from ffkit.recipes.errors import FfkitError
from ffkit.runtime.swap_options import check_values

from .cli_app import app, friendly
from .cli_runtime import declared_option
from .console import err, out


def _require_serve_extra() -> None:
    for module in ("fastapi", "uvicorn"):
        if importlib.util.find_spec(module) is None:
            raise FfkitError(f"ffkit serve needs {module}: pip install 'ffkit[serve]'")
    if importlib.util.find_spec("python_multipart") is None and importlib.util.find_spec("multipart") is None:
        raise FfkitError("ffkit serve needs python-multipart: pip install 'ffkit[serve]'")


@app.command("serve")
@friendly
def serve_cmd(
    models: Path = typer.Option(..., "--models", help="Folder of artifacts (what `ffkit build` writes)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, "--port", help="Port to listen on (0: any free port, printed)."),
    max_concurrency: int = typer.Option(2, "--max-concurrency", help="Swaps (images and video jobs) running at once."),
    max_queue: int = typer.Option(8, "--max-queue", help="Admitted swaps waiting for a worker; beyond, 503."),
    max_upload_mb: float = typer.Option(50.0, "--max-upload-mb", help="Largest request body in MiB (413 beyond)."),
    retention_s: float = typer.Option(3600.0, "--retention-s", help="Seconds a finished video job's result is kept."),
    work_dir: Optional[Path] = typer.Option(None, "--work-dir",
                                            help="Folder for the server's temp folder (default: system temp)."),
    swapper: Optional[str] = declared_option("swapper"),
    variant: Optional[str] = declared_option("variant"),
    providers: str = declared_option("providers"),
    provider_option: Optional[list[str]] = declared_option("provider_option"),
    threads: int = typer.Option(0, "--threads",
                                help="onnxruntime intra-op threads per session (0 = cores / --max-concurrency)."),
    video_workers: int = typer.Option(0, "--video-workers",
                                      help="Frames of one video job at once (0 = cores / --max-concurrency, 1..4)."),
    upload_timeout_s: float = typer.Option(30.0, "--upload-timeout-s", help="Refuse a body stalled this long (408)."),
    shutdown_timeout_s: float = typer.Option(5.0, "--shutdown-timeout-s",
                                             help="On SIGTERM, how long running requests may take to finish."),
    token: Optional[str] = typer.Option(None, "--token", envvar="FFKIT_TOKEN", show_envvar=True,
                                        help="Every API request must send Authorization: Bearer TOKEN (the page, "
                                             "its files and /health excepted). Needed off loopback."),
    insecure_no_token: bool = typer.Option(False, "--insecure-no-token",
                                           help="Listen on an address other than loopback without a token."),
    compare_variant: Optional[str] = typer.Option(None, "--compare-variant",
                                                  help="Load a second variant set (fp32, fp16, int8) for POST "
                                                       "/compare and the page's side-by-side view."),
):
    """Serve face swapping over HTTP: a page at /, GET /health, POST /swap (images), POST /jobs (videos).

    Every optional model in --models (enhancer, landmarker, parser, frame enhancers) is loaded, so a
    request may ask for it (enhance, landmarks=68, mask=region, frame_enhance=NAME). Every request
    shares one session per model. SIGTERM stops gracefully (exit 0): no new work,
    running video jobs cancelled, temp files removed.
    """
    _require_serve_extra()
    check_values({"swapper": swapper, "variant": variant, "providers": providers,
                  "provider_option": provider_option or ()})
    from .serve.server import bind_socket, serve_forever
    from .serve.service import Service
    from .serve.settings import ServeSettings

    settings = ServeSettings(models=models, host=host, port=port, max_concurrency=max_concurrency,
                             max_queue=max_queue, max_upload_mb=max_upload_mb, retention_s=retention_s,
                             work_dir=work_dir, providers=providers, variant=variant,
                             swapper=swapper, threads=threads, video_workers=video_workers,
                             provider_options=tuple(provider_option or ()),
                             upload_timeout_s=upload_timeout_s, shutdown_timeout_s=shutdown_timeout_s,
                             token=token or None, insecure_no_token=insecure_no_token,
                             compare_variant=compare_variant).checked()  # off loopback without a token: refused
    from .serve.access import exposure_warning

    warning = exposure_warning(settings.host, settings.token)
    if warning:
        err.print(warning, highlight=False, soft_wrap=True, markup=False)
    sock = bind_socket(settings.host, settings.port)  # a taken port fails now, not after loading the models
    try:
        with err.status("loading models"):
            service = Service(settings)
    except BaseException:
        sock.close()
        raise
    engines = [service.engine] + ([service.compare_engine] if service.compare_engine is not None else [])
    for note in dict.fromkeys(note for engine in engines for note in engine.models.notes):
        err.print(f"note: {note}", highlight=False, soft_wrap=True)
    for k, engine in enumerate(engines):
        if k:
            out.print(f"compare ({settings.compare_variant}):", soft_wrap=True, highlight=False)
        for role, described in engine.describe().items():
            for info in described if isinstance(described, list) else [described]:  # frame enhancers: a list
                out.print(f"{role:<9} {info['file']}  ({info['recipe']}, {info['variant']}; "
                          f"{', '.join(p.replace('ExecutionProvider', '') for p in info['providers'])})",
                          soft_wrap=True, highlight=False)

    def say(line: str) -> None:
        out.print(line, soft_wrap=True, highlight=False)
        out.file.flush()

    serve_forever(service, sock, say=say)
