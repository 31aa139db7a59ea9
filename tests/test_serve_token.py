"""``ffkit serve --token``: every API route needs ``Authorization: Bearer <token>``; the page, its
static files and ``/health`` do not; a server off loopback without a token is refused at start.

One real server on a loopback port (test_serve's helpers and small models), spoken to over HTTP;
the start-up refusal runs the CLI in process with the bind replaced (nothing listens off loopback).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
from cli_helpers import assert_one_line_error, ffkit
from test_serve import (FAST_FIELDS, _tiny_video, assert_json_error, folder, images, multipart,  # noqa: F401
                        start_server, stop_server)

from ffkit.recipes.errors import FfkitError

TOKEN = "tok-" + uuid.uuid4().hex
WRONG = "tok-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def token_server(folder, tmp_path_factory):  # noqa: F811 - test_serve's fixture
    srv = start_server(folder, tmp_path_factory.mktemp("serve-token") / "work", "--token", TOKEN,
                       "--retention-s", 120)
    yield srv
    stop_server(srv)


def _bearer(token: str | None) -> dict:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _wait_done(server, job_id: str, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status, _, body = server.request("GET", f"/jobs/{job_id}", headers=_bearer(TOKEN))
        job = json.loads(body)
        if job["status"] in ("done", "failed", "cancelled") or time.monotonic() > deadline:
            return job
        time.sleep(0.1)


def test_every_api_route_needs_the_token(token_server, images, tmp_path):  # noqa: F811
    srv = token_server
    image_body = multipart(FAST_FIELDS, {"source": images["small_source"], "target": images["small"]})
    video_body = multipart(FAST_FIELDS, {"source": images["small_source"],
                                         "target": _tiny_video(tmp_path / "clip.mp4", 3)})
    # the right token: a job to address the job routes
    status, _, body = srv.request("POST", "/jobs", video_body[0], {"Content-Type": video_body[1], **_bearer(TOKEN)})
    assert status == 202, body
    job_id = json.loads(body)["id"]
    assert _wait_done(srv, job_id)["status"] == "done"
    # (method, path, body, the status with the right token)
    routes = [("GET", "/options", None, 200), ("GET", "/openapi.json", None, 200), ("GET", "/docs", None, 200),
              ("POST", "/swap", image_body, 200), ("POST", "/compare", image_body, 400),
              ("POST", "/jobs", video_body, 202), ("GET", f"/jobs/{job_id}", None, 200),
              ("GET", f"/jobs/{job_id}/result", None, 200), ("DELETE", f"/jobs/{job_id}", None, 200)]
    # every route of the API is in the table (the schema lists them; / and /static are the page's)
    schema = json.loads(srv.request("GET", "/openapi.json", headers=_bearer(TOKEN))[2])
    declared = {(m.upper(), p.replace("{job_id}", job_id)) for p, ops in schema["paths"].items() for m in ops}
    assert declared - {("GET", "/health")} <= {(m, p) for m, p, _, _ in routes}, declared
    for method, path, payload, want in routes:
        body, content_type = payload if payload else (None, None)
        base = {"Content-Type": content_type} if content_type else {}
        for headers, verdict in (({}, "missing token"), (_bearer(WRONG), "wrong token"),
                                 ({"Authorization": f"Basic {TOKEN}"}, "missing token"),
                                 ({"Authorization": "Bearer"}, "wrong token")):
            status, answer_headers, answer = srv.request(method, path, body, {**base, **headers})
            assert_json_error(status, answer, 401, verdict)
            assert answer_headers["www-authenticate"] == "Bearer", (method, path)
        status, _, answer = srv.request(method, path, body, {**base, **_bearer(TOKEN)})
        assert status == want, (method, path, answer[:300])
    log = srv.log.read_text()
    assert f"401 GET /options from 127.0.0.1: wrong token" in log
    assert "401 POST /swap from 127.0.0.1: missing token" in log
    assert TOKEN not in log and WRONG not in log


def test_page_its_files_and_health_need_no_token(token_server):
    srv = token_server
    status, headers, body = srv.request("GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html") and b"/static/app.js" in body
    assert "default-src 'self'" in headers["content-security-policy"]
    for path, kind in (("/static/app.js", "javascript"), ("/static/style.css", "text/css")):
        status, headers, _ = srv.request("GET", path)
        assert status == 200 and kind in headers["content-type"], path
    status, _, body = srv.request("GET", "/health")
    assert status == 200 and json.loads(body)["auth"] == {"token_required": True}
    assert srv.request("GET", "/static/nothing.js")[0] == 404


def test_tokens_are_compared_in_constant_time(monkeypatch):
    """The gate asks hmac.compare_digest, whatever the token sent."""
    from ffkit.toolkit.serve import access

    calls = []

    def spy(a, b):
        calls.append((a, b))
        return a == b

    monkeypatch.setattr(access.hmac, "compare_digest", spy)
    passed = []

    async def app(scope, receive, send):
        passed.append(scope["path"])

    async def send(message):
        pass

    gate = access.TokenGate(app, "abc")
    for token in ("abc", "abd", "a"):
        scope = {"type": "http", "method": "GET", "path": "/options", "client": ("127.0.0.1", 1),
                 "headers": [(b"authorization", f"Bearer {token}".encode())]}
        asyncio.run(gate(scope, None, send))
    assert calls == [(b"abc", b"abc"), (b"abd", b"abc"), (b"a", b"abc")]
    assert passed == ["/options"]


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.8.9.1", True), ("::1", True),
                                            ("localhost", True), ("0.0.0.0", False), ("::", False),
                                            ("10.1.2.3", False), ("192.168.0.7", False)])
def test_loopback_hosts(host, loopback):
    from ffkit.toolkit.serve.access import check_exposure, is_loopback

    assert is_loopback(host) is loopback
    check_exposure(host, "t", False)
    check_exposure(host, None, True)
    if loopback:
        check_exposure(host, None, False)
    else:
        with pytest.raises(FfkitError, match="--token T or the FFKIT_TOKEN environment variable"):
            check_exposure(host, None, False)


@pytest.fixture
def no_bind(monkeypatch):
    """``ffkit serve``'s bind replaced: it records where it would listen and stops the command there."""
    from ffkit.toolkit.serve import server

    binds = []

    def bind(host, port):
        binds.append(host)
        raise FfkitError("bind stopped by the test")

    monkeypatch.setattr(server, "bind_socket", bind)
    monkeypatch.delenv("FFKIT_TOKEN", raising=False)
    return binds


def test_non_loopback_without_a_token_is_refused_at_start(no_bind, monkeypatch, tmp_path):
    line = assert_one_line_error(ffkit("serve", "--models", tmp_path, "--host", "0.0.0.0"),
                                 "--host 0.0.0.0", "--token T", "FFKIT_TOKEN", "--insecure-no-token")
    assert no_bind == [] and "0.0.0.0" in line
    # a token from the environment, or the override (with its warning), gets as far as binding
    monkeypatch.setenv("FFKIT_TOKEN", TOKEN)
    result = ffkit("serve", "--models", tmp_path, "--host", "0.0.0.0")
    assert "bind stopped by the test" in result.output and TOKEN not in result.output
    monkeypatch.delenv("FFKIT_TOKEN")
    result = ffkit("serve", "--models", tmp_path, "--host", "0.0.0.0", "--insecure-no-token")
    assert "warning: serving on 0.0.0.0 without a token (--insecure-no-token)" in " ".join(result.output.split())
    assert "bind stopped by the test" in result.output
    result = ffkit("serve", "--models", tmp_path, "--host", "0.0.0.0", "--token", TOKEN)
    assert "bind stopped by the test" in result.output and "warning" not in result.output
    assert no_bind == ["0.0.0.0"] * 3
