"""The Docker image (``Dockerfile``, built by ``docker/build-local.sh``) built and checked here.

No Docker daemon and no image registry are needed: podman builds the Dockerfile on a local Python
base made from Debian's packages (debootstrap), and the image's programs run chrooted into the
mounted image (``docker/chroot-run.sh``), since no container can be started on these machines.
The image is built from the demo's seed-0 checkpoints of three small recipes (FP32 + INT8), then:
``ffkit --version`` runs in it, torch cannot be imported, ``/models`` holds the built variants and
their report, ``ffkit swap`` on the bundled photo gives the host's bytes with the same models, and
``ffkit serve`` answers ``/health`` on a loopback port and stops on SIGTERM.

Needs root, Linux, and podman + debootstrap (installed with apt-get when missing; skipped with the
reason when they cannot be). Tens of minutes on 2 cores the first time (the base, torch, three INT8
builds); ``pytest -m docker``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.docker]

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / "docker" / "build-local.sh"
CHROOT = REPO / "docker" / "chroot-run.sh"
PHOTO = REPO / "validation" / "assets" / "astronaut.jpg"
IMAGE = "localhost/ffkit-serve-test:latest"
RECIPES = ("retinaface_mobilenet0.25", "arcface_iresnet18", "inswapper_128")
BUILD_TIMEOUT_S = 3600
RUN_TIMEOUT_S = 600


def _tools_or_skip() -> None:
    """podman and debootstrap on PATH (installed with apt-get when missing), else skip saying why."""
    if not sys.platform.startswith("linux"):
        pytest.skip("the image is built with podman and debootstrap, on Linux only")
    if os.geteuid() != 0:
        pytest.skip("building the local base and chrooting into the image need root")
    missing = [tool for tool in ("podman", "debootstrap", "unshare", "chroot") if shutil.which(tool) is None]
    if missing and shutil.which("apt-get"):
        packages = sorted({"unshare": "util-linux", "chroot": "coreutils"}.get(t, t) for t in missing)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *packages]):
            try:
                subprocess.run(cmd, env=env, capture_output=True, timeout=900, check=False)
            except subprocess.TimeoutExpired:
                break
        missing = [tool for tool in missing if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} missing and not installable with apt-get here")


def _run(cmd, timeout=RUN_TIMEOUT_S, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kwargs)


def _in_image(*args, binds=(), timeout=RUN_TIMEOUT_S, env=None) -> subprocess.CompletedProcess:
    """Run ``args`` in the image as its user (``docker/chroot-run.sh``)."""
    flags = [x for b in binds for x in ("--bind", b)]
    return _run([CHROOT, *flags, IMAGE, *args], timeout=timeout, env=env)


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    """The image built from the demo's checkpoints, FP32 + INT8; its mount point while the tests run."""
    _tools_or_skip()
    from ffkit.toolkit.demo_models import demo_emap, write_synthetic_checkpoint

    ckpt = tmp_path_factory.mktemp("checkpoints")
    for name in RECIPES:
        write_synthetic_checkpoint(name, ckpt / f"{name}.pth")
    np.save(ckpt / "inswapper_128.emap.npy", demo_emap())
    builds = " ".join(f"{name}={name}.pth" for name in RECIPES)
    start = time.monotonic()
    result = _run([BUILD, "-t", IMAGE, "-c", ckpt, "--build-arg", f"BUILDS={builds}",
                   "--build-arg", "EMAP=inswapper_128.emap.npy"], timeout=BUILD_TIMEOUT_S)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    print(f"image built in {time.monotonic() - start:.0f} s")
    mount = Path(_run(["podman", "image", "mount", IMAGE]).stdout.strip())
    assert (mount / "models").is_dir()
    yield mount
    _run(["podman", "image", "unmount", IMAGE])


@pytest.fixture
def scratch(tmp_path):
    """A host folder the image's user may write, bound on the image's /tmp."""
    tmp_path.chmod(0o1777)
    return tmp_path


def test_ffkit_runs_and_torch_is_absent(image):
    version = _in_image("ffkit", "--version")
    assert version.returncode == 0 and version.stdout.strip(), version.stderr
    torch = _in_image("python", "-c", "import torch")
    assert torch.returncode != 0 and "No module named 'torch'" in torch.stderr
    serve = _in_image("python", "-c", "import fastapi, uvicorn, onnxruntime")
    assert serve.returncode == 0, serve.stderr


def test_models_are_the_built_variants_with_their_report(image):
    from ffkit.runtime.models import identify

    files = sorted(p.name for p in (image / "models").iterdir())
    expected = sorted(f"{name}.{variant}.onnx" for name in RECIPES for variant in ("fp32", "int8"))
    assert [f for f in files if f.endswith(".onnx")] == expected
    for name in expected:
        ref = identify(image / "models" / name)
        assert not ref.foreign and f"{ref.recipe.name}.{ref.precision}.onnx" == name
    builds = json.loads((image / "models" / "report.json").read_text())["builds"]
    assert sorted(builds) == sorted(RECIPES)
    for name, build in builds.items():
        assert build["passed"] and [v["variant"] for v in build["variants"]] == ["fp32", "int8"], name
        assert all(v["passed"] for v in build["variants"]), name


def test_swap_in_the_image_gives_the_hosts_bytes(image, scratch, tmp_path_factory):
    import cv2

    from ffkit.runtime.media import read_image

    cv2.imwrite(str(scratch / "source.png"), read_image(PHOTO)[:, ::-1])   # the photo mirrored
    shutil.copy(PHOTO, scratch / "target.jpg")
    # the INT8 variants, one face: the seed-0 models run in seconds so (the FP32 inswapper takes minutes on 2 cores)
    swap = ["swap", "--source", "/tmp/source.png", "--target", "/tmp/target.jpg", "--models", "/models",
            "--variant", "int8", "--max-faces", "1"]
    inside = _in_image("ffkit", *swap, "-o", "/tmp/inside.png", binds=[f"{scratch}:/tmp"])
    assert inside.returncode == 0, inside.stderr[-3000:]

    models = tmp_path_factory.mktemp("image-models")
    for path in (image / "models").glob("*.onnx"):
        shutil.copy(path, models / path.name)
    host = _run([Path(sys.executable).parent / "ffkit", "swap", "--source", scratch / "source.png",
                 "--target", scratch / "target.jpg", "--models", models, "--variant", "int8", "--max-faces", "1",
                 "-o", scratch / "host.png"])
    assert host.returncode == 0, host.stderr[-3000:]
    assert (scratch / "inside.png").read_bytes() == (scratch / "host.png").read_bytes()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_answers_health_and_stops_on_sigterm(image, scratch):
    port = _free_port()
    env = {**os.environ, "FFKIT_TOKEN": "docker-image-test-token"}
    server = subprocess.Popen([str(CHROOT), "--bind", f"{scratch}:/tmp", IMAGE, "ffkit", "serve", "--models",
                               "/models", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        status = None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
                    status = response.status
                break
            except OSError:
                time.sleep(1)
        assert status == 200, f"no /health answer: {server.poll()}"
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=30)
        log = server.stdout.read()
        server.stdout.close()
    assert "Traceback" not in log, log[-3000:]


def test_the_entrypoint_refuses_0000_without_a_token(image, scratch):
    """The image's default command serves on 0.0.0.0: without FFKIT_TOKEN it is refused in one line."""
    usage = _in_image("ffkit", "serve", "--help")
    if "--insecure-no-token" not in usage.stdout:
        pytest.skip("this tree's ffkit serve has no token rule yet")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FFKIT_")}
    refused = _in_image(binds=[f"{scratch}:/tmp"], env=env)    # the entrypoint, no token
    assert refused.returncode == 2, refused.stderr[-3000:]
    lines = [line for line in refused.stderr.strip().splitlines() if "onnxruntime" not in line]  # its own logger
    assert len(lines) == 1 and "FFKIT_TOKEN" in lines[0] and "0.0.0.0" in lines[0]
