"""``ffkit serve``: the torch-free runtime behind an HTTP API (FastAPI + uvicorn).

One job per module::

    settings   ServeSettings: every option, passed in (never globals)
    engine     SwapEngine: models picked once, the one SessionPool, ``ffkit swap``'s calls
    forms      the swap options as form fields (``ffkit swap``'s names)
    uploads    the server's temp folder, saving uploads, sniffing image / video formats
    limits     upload size (413 while streaming), the bounded worker pool and 503 admission
    jobs       video jobs: queued, polled, fetched, expired, cancelled on stop
    errors     JSON errors, no traceback ever
    service    Service: what one server owns, started and stopped together
    app        create_app(settings): the FastAPI app (endpoints)
    server     uvicorn: bind, serve, graceful stop on SIGTERM
    load       ``python -m ffkit.toolkit.serve.load``: a loopback load generator

Needs the ``serve`` extra (``pip install 'ffkit[serve]'``); nothing here imports torch.
"""

from .settings import ServeSettings

__all__ = ["ServeSettings"]
