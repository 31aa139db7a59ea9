"""``python -m ffkit.toolkit.bench``: the isolated measuring worker (:func:`.harness._worker_main`),
started by :func:`.harness.measure_isolated`; it reads a spec as JSON on stdin and prints its
result after a marker on stdout."""

from .harness import _worker_main

if __name__ == "__main__":  # pragma: no cover - exercised through measure_isolated
    _worker_main()
