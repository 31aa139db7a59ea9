"""A load generator for ``ffkit serve``, loopback only: latency percentiles, throughput, server RSS.

    python -m ffkit.toolkit.serve.load --url http://127.0.0.1:8000 --requests 200 --concurrency 4 \\
        --source a.jpg --target b.jpg --max-seconds 60 [--field score_threshold=0.8 ...]

It sends the same ``POST /swap`` (``source``, ``target`` and the ``--field`` options) from
``--concurrency`` threads, each on its own keep-alive connection, until ``--requests`` have been
sent or ``--max-seconds`` have passed (whichever comes first: the run is bounded in count and
time), while a sampler reads the server's RSS and CPU seconds from ``GET /health`` every quarter
second. Only loopback addresses (``127.0.0.0/8``, ``::1``, ``localhost``) are accepted as
targets. Standard library, numpy and rich only.
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import mimetypes
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence
from urllib.parse import urlsplit

import numpy as np
from rich.table import Table

from ffkit.recipes.errors import FfkitError

from ..console import err, out

__all__ = ["loopback_address", "encode_multipart", "LoadResult", "run_load", "load_table", "main"]


def loopback_address(url: str) -> tuple[str, int]:
    """``(host, port)`` of an ``http://`` URL whose host is a loopback address.

    Raises:
        FfkitError: another scheme, or a host that is not ``localhost``, ``127.0.0.0/8`` or ``::1``
            (names other than ``localhost`` are not resolved: they are refused).
    """
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise FfkitError(f"--url {url}: expected http://HOST:PORT")
    host = parts.hostname
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise FfkitError(f"--url {url}: {host} is not a loopback address; this load generator only targets "
                         "127.0.0.0/8, ::1 or localhost")
    return host, parts.port or 80


def encode_multipart(fields: dict[str, str], files: dict[str, Path]) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body of text ``fields`` and ``files`` (name -> path) and its
    ``Content-Type`` header value."""
    boundary = f"ffkit-{uuid.uuid4().hex}"
    chunks = []
    for name, value in fields.items():
        chunks.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, path in files.items():
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        chunks.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{path.name}"\r\n'
                      f"Content-Type: {kind}\r\n\r\n".encode() + path.read_bytes() + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


@dataclass
class LoadResult:
    """What a run measured: latency (s) of each 200 answer, every status (``error`` for a failed
    connection), wall time, the server's RSS samples (MiB) and its CPU seconds at each sample."""

    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    wall_s: float = 0.0
    rss_mib: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    concurrency: int = 1

    @property
    def sent(self) -> int:
        return sum(self.statuses.values())

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile of the 200 answers' latency (linear interpolation), seconds."""
        return float(np.percentile(self.latencies, q)) if self.latencies else float("nan")

    @property
    def server_cpu_s(self) -> float:
        """CPU seconds the server spent between the first and the last sample."""
        return self.cpu_s[-1] - self.cpu_s[0] if len(self.cpu_s) > 1 else float("nan")

    @property
    def throughput(self) -> float:
        """200 answers per second of wall time."""
        return len(self.latencies) / self.wall_s if self.wall_s > 0 else 0.0


class _Client:
    """One keep-alive connection, reopened after the server closed it (as it does after a 413 or 503)."""

    def __init__(self, host: str, port: int, timeout: float):
        self.host, self.port, self.timeout = host, port, timeout
        self.conn: Optional[http.client.HTTPConnection] = None

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            self.conn.request(method, path, body=body, headers=headers or {})
            resp = self.conn.getresponse()
            data = resp.read()
            if (resp.getheader("connection") or "").lower() == "close":
                self.close()
            return resp.status, data
        except (OSError, http.client.HTTPException):
            self.close()
            raise

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _sample_server(host: str, port: int, stop: threading.Event, result: LoadResult) -> None:
    """Read the server's RSS and CPU seconds from /health every 0.25 s until ``stop`` (and once after)."""
    client = _Client(host, port, timeout=5)
    while True:
        try:
            status, data = client.request("GET", "/health")
            process = json.loads(data).get("process", {}) if status == 200 else {}
            if process.get("rss_mb") is not None:
                result.rss_mib.append(float(process["rss_mb"]))
            if process.get("cpu_s") is not None:
                result.cpu_s.append(float(process["cpu_s"]))
        except (OSError, http.client.HTTPException, ValueError):
            pass
        if stop.is_set():
            break
        stop.wait(0.25)
    client.close()


def run_load(url: str, body: bytes, content_type: str, *, requests: int, concurrency: int,
             max_seconds: float) -> LoadResult:
    """Send ``body`` to ``POST {url}/swap`` ``requests`` times from ``concurrency`` threads, for at
    most ``max_seconds`` (no request starts after that; each has that long to answer)."""
    host, port = loopback_address(url)
    result = LoadResult(concurrency=concurrency)
    lock = threading.Lock()
    issued = 0
    start = time.perf_counter()
    deadline = start + max_seconds

    def worker() -> None:
        nonlocal issued
        client = _Client(host, port, timeout=max(1.0, max_seconds))
        while True:
            with lock:
                if issued >= requests or time.perf_counter() >= deadline:
                    break
                issued += 1
            t0 = time.perf_counter()
            try:
                status, _ = client.request("POST", "/swap", body, {"Content-Type": content_type})
            except (OSError, http.client.HTTPException):
                status = "error"
            elapsed = time.perf_counter() - t0
            with lock:
                result.statuses[status] += 1
                if status == 200:
                    result.latencies.append(elapsed)
        client.close()

    stop = threading.Event()
    sampler = threading.Thread(target=_sample_server, args=(host, port, stop, result), daemon=True)
    sampler.start()
    threads = [threading.Thread(target=worker, name=f"load-{i}") for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.wall_s = time.perf_counter() - start
    stop.set()
    sampler.join(5)
    return result


def _cpu(result: LoadResult) -> str:
    if len(result.cpu_s) < 2:
        return "-"
    per = result.server_cpu_s / max(1, len(result.latencies))
    return f"{result.server_cpu_s:.1f} s ({per:.2f} s per swap)"


def load_table(result: LoadResult, title: str = "ffkit serve load") -> Table:
    """The run as a two-column table: counts, p50 / p95 / max latency, throughput, RSS."""
    table = Table(title=title, show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    ms = lambda s: f"{s * 1000:.0f} ms"  # noqa: E731
    rss = result.rss_mib
    rows = [("requests sent", str(result.sent)), ("concurrency", str(result.concurrency)),
            ("answers", ", ".join(f"{k}: {v}" for k, v in sorted(result.statuses.items(), key=str)) or "-"),
            ("latency p50", ms(result.percentile(50))), ("latency p95", ms(result.percentile(95))),
            ("latency max", ms(max(result.latencies)) if result.latencies else "-"),
            ("throughput", f"{result.throughput:.2f} swaps/s"), ("wall time", f"{result.wall_s:.1f} s"),
            ("server RSS start / peak / end", f"{rss[0]:.0f} / {max(rss):.0f} / {rss[-1]:.0f} MiB" if rss else "-"),
            ("server CPU time", _cpu(result))]
    for row in rows:
        table.add_row(*row)
    return table


def _fields(items: Sequence[str]) -> dict[str, str]:
    fields = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise FfkitError(f"--field {item}: expected NAME=VALUE (e.g. score_threshold=0.8)")
        fields[key] = value
    return fields


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point; returns the exit code (2 on a bad argument, one line)."""
    parser = argparse.ArgumentParser(prog="python -m ffkit.toolkit.serve.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the server, http://127.0.0.1:PORT (loopback only)")
    parser.add_argument("--requests", type=int, default=50, help="requests to send in all")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight at once")
    parser.add_argument("--source", type=Path, required=True, help="source image")
    parser.add_argument("--target", type=Path, required=True, help="target image")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="stop starting requests after this")
    parser.add_argument("--field", action="append", default=[], help="a swap option NAME=VALUE (repeatable)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    try:
        loopback_address(args.url)
        if args.requests < 1 or args.concurrency < 1 or args.max_seconds <= 0:
            raise FfkitError("--requests and --concurrency must be at least 1, --max-seconds more than 0")
        for path in (args.source, args.target):
            if not path.is_file():
                raise FfkitError(f"{path}: not found")
        body, content_type = encode_multipart(_fields(args.field), {"source": args.source, "target": args.target})
    except FfkitError as e:
        err.print(f"error: {e}", highlight=False, soft_wrap=True, markup=False)
        return 2
    result = run_load(args.url.rstrip("/"), body, content_type, requests=args.requests,
                      concurrency=args.concurrency, max_seconds=args.max_seconds)
    out.print(load_table(result))
    if args.json is not None:
        args.json.write_text(json.dumps({
            "requests": result.sent, "concurrency": result.concurrency,
            "statuses": {str(k): v for k, v in result.statuses.items()},
            "p50_ms": result.percentile(50) * 1000, "p95_ms": result.percentile(95) * 1000,
            "throughput_per_s": result.throughput, "wall_s": result.wall_s, "rss_mib": result.rss_mib,
            "server_cpu_s": result.server_cpu_s}, indent=2))
    return 0 if result.latencies else 1


if __name__ == "__main__":
    sys.exit(main())
