"""``ffkit serve`` as a user runs it: a real server process on a loopback port, spoken to over HTTP.

The server runs the small seed-0 models of the other runtime tests (retinaface_mobilenet0.25,
arcface_iresnet18, the tiny foreign inswapper of ``runtime_helpers``) and the seed-0
bisenet_faceparsing export (``mask=region``); the slow test adds fan_2dfan4 and realesrgan_x2plus
(``landmarks=68``, ``frame_enhance``) on a server of its own. Its answers are checked
against ``ffkit swap`` run on the same files (pixel for pixel), against ``probe_video`` of the
input (frame counts), and against numbers written here (status codes, limits, time bounds).
"""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from importlib.metadata import version
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest
from cli_helpers import ffkit
from runtime_helpers import ASTRONAUT, FAST_ARGS, link, models_dir

from ffkit.runtime import iter_frames, probe_video, read_image
from ffkit.validation.synthetic_media import make_test_video, pan_frames

#: The module server's limits: 2 running + 4 waiting = 6 admitted; 2 MiB bodies; results kept 5 s.
CONCURRENCY, QUEUE, UPLOAD_MB, RETENTION_S = 2, 4, 2, 5
#: Form fields equal to FAST_ARGS (``--score-threshold 0.8 --max-faces 2``).
FAST_FIELDS = {"score_threshold": "0.8", "max_faces": "2"}
#: How long a server may take to come up (model loading on a busy 2-core machine).
START_TIMEOUT_S = 90
#: SIGTERM to exit, with a video job running (stated bound; typically 1-3 s).
STOP_WITHIN_S = 10
#: RSS growth allowed across rounds of requests after a warm-up round (MiB).
RSS_GROWTH_MIB = 40


# ---------------------------------------------------------------- a server process and a tiny client

@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    work_dir: Path
    log: Path

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                timeout: float = 60) -> tuple[int, dict, bytes]:
        """``(status, headers with lower-case names, body)`` of one request."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def get_json(self, path: str) -> tuple[int, dict]:
        status, _, body = self.request("GET", path)
        return status, json.loads(body)

    def post(self, path: str, fields: dict | None = None, files: dict | None = None, timeout: float = 60):
        body, content_type = multipart(fields or {}, files or {})
        return self.request("POST", path, body, {"Content-Type": content_type}, timeout=timeout)

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


def multipart(fields: dict, files: dict) -> tuple[bytes, str]:
    """A multipart/form-data body (RFC 7578) of text ``fields`` and ``files`` {name: path or
    (filename, bytes)}, and its content type."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, item in files.items():
        filename, data = (item.name, item.read_bytes()) if isinstance(item, Path) else item
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def start_server(folder: Path, work_dir: Path, *args) -> Server:
    """``ffkit serve`` on a free loopback port (``--port 0``, the port read from its first line),
    once its /health answers; fails with the server's log if it does not within the timeout."""
    work_dir.mkdir(parents=True, exist_ok=True)
    log = work_dir.parent / f"{work_dir.name}.log"
    with open(log, "wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "ffkit.toolkit", "serve", "--models", str(folder),
                                 "--port", "0", "--work-dir", str(work_dir), *map(str, args)],
                                stdout=sink, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + START_TIMEOUT_S
    port = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"ffkit serve exited {proc.returncode}:\n{log.read_text()}")
        found = re.search(r"listening on http://127\.0\.0\.1:(\d+)", log.read_text())
        if found:
            port = int(found.group(1))
            try:
                if Server(proc, port, work_dir, log).request("GET", "/health", timeout=5)[0] == 200:
                    return Server(proc, port, work_dir, log)
            except OSError:
                pass
        time.sleep(0.2)
    stop_server(Server(proc, port or 0, work_dir, log))
    raise AssertionError(f"ffkit serve did not answer /health within {START_TIMEOUT_S} s:\n{log.read_text()}")


def stop_server(server: Server, timeout: float = STOP_WITHIN_S) -> tuple[int, float]:
    """SIGTERM, then SIGKILL after ``timeout``: ``(exit code, seconds to exit)``."""
    start = time.monotonic()
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait(10)
    return server.proc.returncode, time.monotonic() - start


def assert_json_error(status: int, body: bytes, want_status: int, *fragments: str) -> str:
    """The answer is ``want_status`` with a JSON body ``{"error": "<one line>"}`` holding every
    fragment and no traceback; returns the message."""
    payload = json.loads(body)
    assert status == want_status, (status, payload)
    assert list(payload) == ["error"] and isinstance(payload["error"], str), payload
    message = payload["error"]
    assert "\n" not in message and "Traceback" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def folder(artifacts, tmp_path_factory):
    root = models_dir(artifacts, tmp_path_factory.mktemp("serve") / "models")
    link(artifacts.export("bisenet_faceparsing").path, root / "bisenet_faceparsing.fp32.onnx")
    return root


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """source: the photo mirrored (PNG); target_png: the photo as PNG; small and small_source:
    both at 160 x 160 (the load rounds: cheap requests)."""
    root = tmp_path_factory.mktemp("serve-images")
    photo = read_image(ASTRONAUT)
    paths = {"source": root / "face.png", "target_png": root / "target.png", "small": root / "small.png",
             "small_source": root / "small_face.png"}
    small = cv2.resize(photo, (160, 160), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(paths["source"]), photo[:, ::-1])
    cv2.imwrite(str(paths["target_png"]), photo)
    cv2.imwrite(str(paths["small"]), small)
    cv2.imwrite(str(paths["small_source"]), small[:, ::-1])
    return paths


@pytest.fixture(scope="module")
def server(folder, tmp_path_factory):
    srv = start_server(folder, tmp_path_factory.mktemp("serve-run") / "work", "--max-concurrency", CONCURRENCY,
                       "--max-queue", QUEUE, "--max-upload-mb", UPLOAD_MB, "--retention-s", RETENTION_S)
    yield srv
    stop_server(srv)


def cli_swap(folder: Path, source: Path, target: Path, out: Path, *args) -> dict:
    """``ffkit swap`` on the same files: its JSON summary (the output is at ``out``)."""
    summary = out.with_suffix(".json")
    result = ffkit("swap", "--source", source, "--target", target, "-o", out, "--models", folder,
                   "--json", summary, *args)
    assert result.exit_code == 0, result.output
    return json.loads(summary.read_text())


# ---------------------------------------------------------------- health and /swap

def test_health_lists_models_their_providers_and_the_version(server):
    status, health = server.get_json("/health")
    assert status == 200
    models = health["models"]
    assert {role: (m["file"], m["recipe"], m["variant"]) for role, m in models.items()} == {
        "detector": ("retinaface_mobilenet0.25.fp32.onnx", "retinaface_mobilenet0.25", "fp32"),
        "embedder": ("arcface_iresnet18.fp32.onnx", "arcface_iresnet18", "fp32"),
        "swapper": ("inswapper_128.onnx", "inswapper_128", "fp32"),
        "parser": ("bisenet_faceparsing.fp32.onnx", "bisenet_faceparsing", "fp32")}
    assert models["swapper"]["foreign"] is True and models["detector"]["foreign"] is False
    available = ort.get_available_providers()
    for m in models.values():
        assert m["providers"][-1] == "CPUExecutionProvider" and set(m["providers"]) <= set(available)
        if available == ["CPUExecutionProvider"]:
            assert m["providers"] == ["CPUExecutionProvider"]
    assert health["version"] == version("ffkit")
    assert health["process"]["pid"] == server.proc.pid
    assert health["queue"]["capacity"] == CONCURRENCY + QUEUE


@pytest.mark.parametrize("case", ["png", "jpeg", "reference"])
def test_swap_gives_the_pixels_of_ffkit_swap(case, server, folder, images, tmp_path):
    """Same files, same options, same pixels. JPEG too is compared exactly: server and CLI encode
    the same array with the same OpenCV at the same quality (95), so the files are identical."""
    target = {"png": images["target_png"], "jpeg": ASTRONAUT, "reference": ASTRONAUT}[case]
    args, fields, files = list(FAST_ARGS), dict(FAST_FIELDS), {"source": images["source"], "target": target}
    if case == "reference":
        args += ["--reference", ASTRONAUT, "--similarity", "0.999"]
        fields["similarity"] = "0.999"
        files["reference"] = ASTRONAUT
    out = tmp_path / f"cli{target.suffix}"
    summary = cli_swap(folder, images["source"], target, out, *args)
    status, headers, body = server.post("/swap", fields, files)
    assert status == 200, body[:300]
    assert headers["content-type"] == ("image/png" if case == "png" else "image/jpeg")
    got = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(got, read_image(out))
    assert body == out.read_bytes()
    assert int(headers["x-faces-swapped"]) == summary["faces_swapped"] >= 1
    assert int(headers["x-faces-detected"]) == len(summary["faces"])
    assert (got != read_image(target)).any()


#: ``/swap`` fields and the ``ffkit swap`` options they stand for (the pipeline options).
OPTION_CASES = {
    "box,region + color match": ({"mask": "box,region", "color_match": "true"},
                                 ["--mask", "box,region", "--color-match"]),
    "region of skin and nose": ({"mask": "region", "mask_regions": "skin,nose"},
                                ["--mask", "region", "--mask-regions", "skin,nose"]),
}


@pytest.mark.parametrize("case", list(OPTION_CASES))
def test_swap_with_pipeline_options_gives_the_bytes_of_ffkit_swap(case, server, folder, images, tmp_path):
    """The parser's region mask and the colour match through the server: the PNG ``ffkit swap``
    writes with the same options, byte for byte, and not the plain (box-only) swap."""
    fields, args = OPTION_CASES[case]
    files = {"source": images["source"], "target": images["target_png"]}
    out = tmp_path / "cli.png"
    summary = cli_swap(folder, images["source"], images["target_png"], out, *FAST_ARGS, *args)
    status, headers, body = server.post("/swap", {**FAST_FIELDS, **fields}, files)
    assert status == 200, body[:300]
    assert body == out.read_bytes()
    assert int(headers["x-faces-swapped"]) == summary["faces_swapped"] >= 1
    status, _, plain = server.post("/swap", FAST_FIELDS, files)
    assert status == 200
    changed = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR) != read_image(images["target_png"])
    plain_changed = cv2.imdecode(np.frombuffer(plain, np.uint8), cv2.IMREAD_COLOR) != read_image(images["target_png"])
    assert changed.any() and plain != body
    if "region" in fields["mask"]:   # the parser's face regions cover less than the whole box
        assert changed.any(axis=2).sum() < plain_changed.any(axis=2).sum()


def _tiny_video(path: Path, frames: int) -> Path:
    return Path(make_test_video(path, frames=frames, size=(160, 128), fps=Fraction(25),
                                frame_fn=pan_frames(read_image(ASTRONAUT), frames)))


ERROR_CASES = {
    "missing target": ("/swap", {}, {"source"}, 422, ["target", "required"]),
    "target not an image": ("/swap", {}, {"source", "garbage"}, 400, ["target: not an image"]),
    "truncated image": ("/swap", {}, {"source", "truncated"}, 400, ["not a decodable image", "target.png"]),
    "no face in the source": ("/swap", {"score_threshold": "0.9999"}, {"source", "target"}, 400,
                              ["no face found in the source image"]),
    "unknown select mode": ("/swap", {"select": "bogus"}, {"source", "target"}, 422, ["select"]),
    "blend out of range": ("/swap", {"enhance_blend": "2"}, {"source", "target"}, 422, ["enhance_blend"]),
    "enhance without an enhancer": ("/swap", {"enhance": "true"}, {"source", "target"}, 400, ["no enhancer"]),
    "video sent to /swap": ("/swap", {}, {"source", "video"}, 400, ["POST /jobs"]),
    "image sent to /jobs": ("/jobs", {}, {"source", "target"}, 400, ["POST /swap"]),
    # a role the models folder lacks: 400 naming the role
    "landmarks 68 without a landmarker": ("/swap", {"landmarks": "68"}, {"source", "target"}, 400,
                                          ["landmarks=68", "no landmarker artifact (fan_2dfan4)"]),
    "frame enhancer not loaded": ("/swap", {"frame_enhance": "realesrgan_x2plus"}, {"source", "target"}, 400,
                                  ["no frame_enhancer artifact realesrgan_x2plus", "loaded: none"]),
    "job with no frame enhancer": ("/jobs", {"frame_enhance": "auto"}, {"source", "video"}, 400,
                                   ["frame_enhance=auto", "no frame_enhancer artifact"]),
    "job enhance without an enhancer": ("/jobs", {"enhance": "true"}, {"source", "video"}, 400,
                                        ["no enhancer artifact (gfpgan_v1.4)"]),
    # bad values: 422 naming the field
    "unknown mask": ("/swap", {"mask": "box,ellipse"}, {"source", "target"}, 422, ["mask:", "box and/or region"]),
    "empty mask": ("/jobs", {"mask": " , "}, {"source", "video"}, 422, ["mask:", "box and/or region"]),
    "unknown region": ("/swap", {"mask": "region", "mask_regions": "skin,beard"}, {"source", "target"}, 422,
                       ["mask_regions:", "'beard'", "nose"]),
    "no region": ("/swap", {"mask_regions": ", ,"}, {"source", "target"}, 422, ["mask_regions:", "no face region"]),
    "landmarks neither 5 nor 68": ("/swap", {"landmarks": "7"}, {"source", "target"}, 422, ["landmarks:", "5 or 68"]),
    "unknown frame enhancer": ("/swap", {"frame_enhance": "gfpgan_v1.4"}, {"source", "target"}, 422,
                               ["frame_enhance:", "realesrgan_x2plus"]),
    "negative tile": ("/swap", {"tile": "-2"}, {"source", "target"}, 422, ["tile:"]),
    "unknown frame size": ("/swap", {"frame_enhance_size": "huge"}, {"source", "target"}, 422,
                           ["frame_enhance_size:", "'native' or 'input'"]),
    "color match not a boolean": ("/swap", {"color_match": "maybe"}, {"source", "target"}, 422, ["color_match:"]),
    "detect every 0": ("/jobs", {"detect_every": "0"}, {"source", "video"}, 422, ["detect_every:", "1"]),
    "smooth of 1": ("/jobs", {"smooth": "1"}, {"source", "video"}, 422, ["smooth:", "less than 1"]),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_bad_request_is_a_json_error(case, server, images, tmp_path):
    path, fields, which, want, fragments = ERROR_CASES[case]
    available = {"source": lambda: ("face.png", images["source"].read_bytes()),
                 "target": lambda: ("target.png", images["small"].read_bytes()),
                 "garbage": lambda: ("photo.jpg", b"this is not an image at all" * 20),
                 "truncated": lambda: ("photo.png", images["small"].read_bytes()[:300]),
                 "video": lambda: ("clip.mp4", _tiny_video(tmp_path / "clip.mp4", 2).read_bytes())}
    files = {("target" if k in ("garbage", "truncated", "video") else k): available[k]() for k in which}
    status, _, body = server.post(path, fields, files)
    message = assert_json_error(status, body, want, *fragments)
    assert str(server.work_dir) not in message  # no server paths in what a client sees
    assert server.get_json("/health")[0] == 200


@pytest.mark.parametrize("path, fragment", [("/jobs/0123456789abcdef", "no job"), ("/no/such/route", "Not Found")])
def test_unknown_paths_are_json_404(path, fragment, server):
    status, _, body = server.request("GET", path)
    assert_json_error(status, body, 404, fragment)


# ---------------------------------------------------------------- limits

def _raw(server: Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.settimeout(10)
    return sock


def _read_answer(sock: socket.socket) -> tuple[int, bytes]:
    """Status and body of the one HTTP/1.1 answer on ``sock`` (read until the server closes or
    Content-Length is met)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    return int(head.split()[1]), body


def test_declared_body_over_the_limit_is_refused_before_it_is_sent(server):
    sock = _raw(server)
    try:
        size = 5 * UPLOAD_MB * 1024 * 1024
        sock.sendall(f"POST /swap HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                     f"Content-Length: {size}\r\n\r\n".encode())  # headers only: not one byte of the body
        start = time.monotonic()
        status, body = _read_answer(sock)
        assert time.monotonic() - start < 5
    finally:
        sock.close()
    assert_json_error(status, body, 413, "upload limit of 2 MiB", "10 MiB")


def test_chunked_body_is_counted_as_it_arrives(server):
    """A chunked body has no length: the server counts it and answers 413 once it passes the limit,
    while the body is still arriving (the final chunk is never sent)."""
    sock = _raw(server)
    chunk = 256 * 1024
    sent = 0
    try:
        sock.sendall(b"POST /swap HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        part = b'--b\r\nContent-Disposition: form-data; name="source"; filename="a.png"\r\n\r\n'
        sock.sendall(b"%x\r\n" % len(part) + part + b"\r\n")  # a valid start, then a file that never ends
        try:
            while sent <= UPLOAD_MB * 1024 * 1024 + chunk:
                sock.sendall(b"%x\r\n" % chunk + b"\0" * chunk + b"\r\n")
                sent += chunk
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed while we were still sending
        status, body = _read_answer(sock)
    finally:
        sock.close()
    assert_json_error(status, body, 413, "upload limit of 2 MiB", "while arriving")
    assert sent <= UPLOAD_MB * 1024 * 1024 + 2 * chunk


def _wait_queue(server: Server, admitted: int, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        queue = server.get_json("/health")[1]["queue"]
        if queue["running"] + queue["waiting"] == admitted or time.monotonic() > deadline:
            return queue
        time.sleep(0.05)


def test_full_queue_is_503_with_retry_after(server, images):
    """Uploads still arriving hold their place: with running + waiting places all taken by
    half-sent bodies, the next swap is refused at once with 503 and Retry-After."""
    capacity = CONCURRENCY + QUEUE
    held = []
    try:
        for _ in range(capacity):
            sock = _raw(server)
            sock.sendall(b"POST /swap HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                         b"Content-Length: 1000\r\n\r\n--b\r\n")
            held.append(sock)
        queue = _wait_queue(server, capacity)
        assert queue["running"] + queue["waiting"] == capacity, queue
        status, headers, body = server.post("/swap", FAST_FIELDS, {"source": images["source"],
                                                                   "target": images["small"]})
        assert_json_error(status, body, 503, "server busy", "6 swaps")
        assert 1 <= int(headers["retry-after"]) <= 60
    finally:
        for sock in held:
            sock.close()
    assert _wait_queue(server, 0)["waiting"] == 0
    status, _, _ = server.post("/swap", FAST_FIELDS, {"source": images["source"], "target": images["small"]})
    assert status == 200


@pytest.fixture(scope="module")
def small_expected(folder, images, tmp_path_factory):
    """``ffkit swap`` of the small source into the small target: the bytes every /swap of them must give."""
    out = tmp_path_factory.mktemp("serve-small") / "out.png"
    cli_swap(folder, images["small_source"], images["small"], out, *FAST_ARGS)
    return out.read_bytes()


def _round(server: Server, images, n: int, at_once: int) -> list[tuple[int, bytes]]:
    def one(_):
        status, _, body = server.post("/swap", FAST_FIELDS, {"source": images["small_source"],
                                                             "target": images["small"]}, timeout=120)
        return status, body

    with ThreadPoolExecutor(at_once) as pool:
        return list(pool.map(one, range(n)))


def test_24_requests_6_at_a_time_get_no_5xx_but_503(server, images, small_expected):
    results = _round(server, images, 24, 6)
    statuses = [s for s, _ in results]
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(200) >= 1
    assert all(body == small_expected for s, body in results if s == 200)
    for s, body in results:
        if s == 503:
            assert_json_error(s, body, 503, "busy")


def test_memory_stays_flat_across_rounds(server, images, small_expected):
    _round(server, images, 12, 3)  # warm-up: arenas and caches reach their working size
    base = server.rss_kib()
    after = []
    for _ in range(2):
        assert {s for s, _ in _round(server, images, 12, 3)} <= {200, 503}
        after.append(server.rss_kib())
    growth_mib = (max(after) - base) / 1024
    assert growth_mib <= RSS_GROWTH_MIB, (base, after)


# ---------------------------------------------------------------- video jobs and stopping

def _poll(server: Server, job_id: str, until, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status, job = server.get_json(f"/jobs/{job_id}")
        assert status == 200, job
        if until(job) or time.monotonic() > deadline:
            return job
        time.sleep(0.05)


def test_video_job_runs_to_its_result_and_expires(server, images, tmp_path):
    video = _tiny_video(tmp_path / "in.mp4", 8)
    status, headers, body = server.post("/jobs", FAST_FIELDS, {"source": images["source"], "target": video})
    assert status == 202, body
    job_id = json.loads(body)["id"]
    assert headers["location"] == f"/jobs/{job_id}"
    job = _poll(server, job_id, lambda j: j["status"] in ("done", "failed"))
    assert job["status"] == "done", job
    frames = probe_video(video).frame_count
    assert job["progress"] == {"frames_done": frames, "frames_total": frames} and frames == 8
    status, headers, data = server.request("GET", job["result"])
    assert status == 200 and headers["content-type"] == "video/mp4"
    out = tmp_path / "out.mp4"
    out.write_bytes(data)
    a, b = probe_video(video), probe_video(out)
    assert (b.frame_count, b.width, b.height, b.fps, b.has_audio) == (a.frame_count, a.width, a.height, a.fps, True)
    assert job["summary"]["frames"] == 8
    # kept for RETENTION_S after it finished, then forgotten and its files deleted
    deadline = time.monotonic() + RETENTION_S + 10
    while server.request("GET", f"/jobs/{job_id}")[0] == 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    status, _, body = server.request("GET", f"/jobs/{job_id}/result")
    assert_json_error(status, body, 404, "no job")
    (root,) = server.work_dir.iterdir()
    assert not [p for p in root.iterdir() if p.name.startswith("job-")]


def test_video_job_with_pipeline_and_tracking_options_gives_the_frames_of_ffkit_swap(server, folder, images,
                                                                                     tmp_path):
    """``mask=box,region``, ``color_match``, ``detect_every=2``, ``smooth=0.5`` on a job: every
    decoded frame of its result equals the one ``ffkit swap`` writes with the same options, and
    the tracking options do change the frames (the same job without them differs)."""
    video = _tiny_video(tmp_path / "in.mp4", 6)
    options = {"mask": "box,region", "color_match": "true"}
    tracking = {"detect_every": "2", "smooth": "0.5"}
    out = tmp_path / "cli.mp4"
    cli_swap(folder, images["source"], video, out, *FAST_ARGS, "--mask", "box,region", "--color-match",
             "--detect-every", "2", "--smooth", "0.5")
    results = {}
    for name, fields in (("tracked", {**options, **tracking}), ("untracked", options)):
        status, _, body = server.post("/jobs", {**FAST_FIELDS, **fields}, {"source": images["source"],
                                                                           "target": video})
        assert status == 202, body
        job = _poll(server, json.loads(body)["id"], lambda j: j["status"] in ("done", "failed"))
        assert job["status"] == "done", job
        status, _, data = server.request("GET", job["result"])
        assert status == 200
        results[name] = tmp_path / f"{name}.mp4"
        results[name].write_bytes(data)
    want = list(iter_frames(out))
    got = list(iter_frames(results["tracked"]))
    assert len(got) == len(want) == 6
    for k, (a, b) in enumerate(zip(got, want)):
        assert np.array_equal(a, b), f"frame {k}: max abs diff {np.abs(a.astype(int) - b).max()}"
    assert any(not np.array_equal(a, b) for a, b in zip(got, iter_frames(results["untracked"])))


@pytest.fixture(scope="module")
def second_server(folder, tmp_path_factory):
    """One worker, uploads that stall for 1 s refused; stopped by the SIGTERM test (or here)."""
    srv = start_server(folder, tmp_path_factory.mktemp("serve-stop") / "work", "--max-concurrency", 1,
                       "--upload-timeout-s", 1)
    yield srv
    stop_server(srv)


def test_stalled_upload_is_408(second_server):
    sock = _raw(second_server)
    try:
        sock.sendall(b"POST /swap HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                     b"Content-Length: 1000\r\n\r\n--b\r\n")  # then nothing
        start = time.monotonic()
        status, body = _read_answer(sock)
        waited = time.monotonic() - start
    finally:
        sock.close()
    assert_json_error(status, body, 408, "stalled", "1 s")
    assert 0.9 <= waited < 8


def test_sigterm_cancels_a_running_job_and_exits_cleanly(second_server, images, tmp_path):
    """A job keeps running after its client hung up; SIGTERM then stops the server within
    STOP_WITHIN_S, exit code 0, the job cancelled, nothing left in the work folder."""
    srv = second_server
    try:
        video = _tiny_video(tmp_path / "long.mp4", 40)
        status, _, body = srv.post("/jobs", FAST_FIELDS, {"source": images["source"], "target": video})
        assert status == 202, body  # that connection is closed now
        job = _poll(srv, json.loads(body)["id"],
                    lambda j: j["progress"]["frames_done"] >= 2 or j["status"] in ("done", "failed"))
        assert job["status"] == "running" and job["progress"]["frames_done"] < 40, job
        assert list(srv.work_dir.iterdir())  # the server's temp folder exists while it runs
    finally:
        code, seconds = stop_server(srv)
    log = srv.log.read_text()
    assert code == 0, log
    assert seconds < STOP_WITHIN_S, log
    assert list(srv.work_dir.iterdir()) == [], log
    assert "Traceback" not in log, log


# ---------------------------------------------------------------- the load script

def test_load_script_targets_loopback_only_and_counts_a_run(server, images, small_expected):
    from ffkit.recipes.errors import FfkitError
    from ffkit.toolkit.serve import load

    for url in ("http://10.1.2.3:8000", "http://example.com:8000", "https://127.0.0.1:8000"):
        with pytest.raises(FfkitError, match="loopback|http://HOST:PORT"):
            load.loopback_address(url)
    assert load.main(["--url", "http://192.168.1.1:8000", "--source", str(images["small_source"]),
                      "--target", str(images["small"])]) == 2  # refused before any connection
    assert load.loopback_address("http://[::1]:9") == ("::1", 9)
    body, content_type = load.encode_multipart(FAST_FIELDS, {"source": images["small_source"],
                                                             "target": images["small"]})
    result = load.run_load(f"http://127.0.0.1:{server.port}", body, content_type, requests=6, concurrency=2,
                           max_seconds=60)
    assert dict(result.statuses) == {200: 6} and len(result.latencies) == 6
    lat = sorted(result.latencies)
    assert result.percentile(50) == pytest.approx((lat[2] + lat[3]) / 2)
    assert result.percentile(95) == pytest.approx(lat[4] + 0.75 * (lat[5] - lat[4]))  # rank 0.95 * 5 = 4.75
    assert result.throughput == pytest.approx(6 / result.wall_s)
    assert result.rss_mib and min(result.rss_mib) > 50


# ---------------------------------------------------------------- every optional role (slow: three more exports)

@pytest.mark.slow
def test_server_with_every_optional_role_serves_landmarks_68_and_frame_enhance(artifacts, images,
                                                                              tmp_path_factory):
    """A models folder with parser, landmarker and a 2x upscaler: /health lists them by role, and
    ``landmarks=68&mask=box,region&frame_enhance=realesrgan_x2plus`` (and ``auto``, the one
    loaded) gives the PNG of ``ffkit swap`` with the same options, twice the target's size; an
    odd tile (the x2 network folds 2x2 blocks) is a 422."""
    root = tmp_path_factory.mktemp("serve-all")
    full = models_dir(artifacts, root / "models")
    for name in ("bisenet_faceparsing", "fan_2dfan4", "realesrgan_x2plus"):
        link(artifacts.export(name).path, full / f"{name}.fp32.onnx")
    out = root / "cli.png"
    args = ["--landmarks", "68", "--mask", "box,region", "--frame-enhance", "realesrgan_x2plus", "--tile", "64"]
    summary = cli_swap(full, images["small_source"], images["small"], out, *FAST_ARGS, *args)
    srv = start_server(full, root / "work")
    try:
        status, health = srv.get_json("/health")
        assert status == 200
        models = health["models"]
        assert [(m["recipe"], m["variant"]) for m in models["frame_enhancer"]] == [("realesrgan_x2plus", "fp32")]
        assert (models["landmarker"]["recipe"], models["parser"]["recipe"]) == ("fan_2dfan4", "bisenet_faceparsing")
        files = {"source": images["small_source"], "target": images["small"]}
        fields = {**FAST_FIELDS, "landmarks": "68", "mask": "box,region", "tile": "64"}
        for name in ("realesrgan_x2plus", "auto"):
            status, headers, body = srv.post("/swap", {**fields, "frame_enhance": name}, files, timeout=180)
            assert status == 200, body[:300]
            assert body == out.read_bytes(), name
            assert int(headers["x-faces-swapped"]) == summary["faces_swapped"]
        assert cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR).shape == (320, 320, 3)
        status, _, body = srv.post("/swap", {**fields, "frame_enhance": "auto", "tile": "63"}, files)
        assert_json_error(status, body, 422, "tile:", "multiples of 2")
        status, _, body = srv.post("/swap", {**fields, "frame_enhance": "realesrgan_x4plus"}, files)
        assert_json_error(status, body, 400, "no frame_enhancer artifact realesrgan_x4plus",
                          "loaded: realesrgan_x2plus")
    finally:
        stop_server(srv)


# ---------------------------------------------------------------- a bug answers 500, without its traceback

def test_unhandled_exception_is_500_internal_error_and_logged(tmp_path, caplog):
    """The whole middleware stack of the app, in process: a route that raises answers
    ``500 {"error": "internal error"}``, the traceback goes to the log only."""
    import asyncio

    from ffkit.toolkit.serve.app import create_app
    from ffkit.toolkit.serve.service import Service
    from ffkit.toolkit.serve.settings import ServeSettings

    class BrokenEngine:
        def describe(self):
            raise RuntimeError("secret detail /srv/models")

    settings = ServeSettings(models=tmp_path, work_dir=tmp_path)
    service = Service(settings, engine=BrokenEngine())
    app = create_app(settings, service)
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "path": "/health",
             "raw_path": b"/health", "query_string": b"", "headers": [], "client": ("127.0.0.1", 1),
             "server": ("127.0.0.1", 80), "scheme": "http", "root_path": ""}
    try:
        asyncio.run(app(scope, receive, send))
    finally:
        service.close()
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 500
    body = b"".join(m.get("body", b"") for m in sent[1:])
    assert json.loads(body) == {"error": "internal error"}
    assert "secret detail" in caplog.text and "Traceback" in caplog.text
    assert list(tmp_path.iterdir()) == []  # the service's temp folder went with it
