"""One swap contract: the declared swap options reach the CLI, serve, the job record and the Ray
setup with the same default and range; a bad value gets one message everywhere; a Ray batch
swaps with every option the local batch does; the roles are read from one table."""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest
import typer.main
from cli_helpers import assert_one_line_error
from cli_helpers import ffkit as invoke
from runtime_helpers import ASTRONAUT, models_dir
from test_batch import FRAMES, make_clips, make_source
from test_ray_batch import cluster, deadline, needs_ray  # noqa: F401 - the local Ray cluster fixture

from ffkit.recipes import REGISTRY
from ffkit.recipes.errors import FfkitError
from ffkit.recipes.roles import ROLE_TABLE
from ffkit.runtime.face_masks import DEFAULT_REGIONS
from ffkit.runtime.media import iter_frames, read_image
from ffkit.runtime.models import PREFERENCE, ROLES, wanted_roles
from ffkit.runtime.swap_options import OPTION_BY_NAME, SWAP_OPTIONS, check_values, options_for, swap_settings
from ffkit.toolkit.cli import app

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")


def swap_command():
    return typer.main.get_command(app).get_command(None, "swap")


# ---------------------------------------------------------------- the declaration reaches every place

def test_cli_declares_every_option_with_its_default():
    params = {p.name: p for p in swap_command().params}
    for spec in SWAP_OPTIONS:
        param = params[spec.name]
        assert spec.flag in param.opts, (spec.name, param.opts)
        if spec.repeat:
            assert param.multiple and param.default is None
        else:
            assert param.default == spec.text_default, spec.name
        assert spec.help in param.help
    assert set(params) - set(OPTION_BY_NAME) == {"source", "target", "output", "models", "reference", "json_out",
                                                 "ray"}


def _fake_app(tmp_path):
    from ffkit.toolkit.serve.app import create_app
    from ffkit.toolkit.serve.service import Service
    from ffkit.toolkit.serve.settings import ServeSettings

    class NoModels:   # the form checks come before any model is used
        def describe(self):
            return {}

    tmp_path.mkdir(exist_ok=True)
    settings = ServeSettings(models=tmp_path, work_dir=tmp_path)
    service = Service(settings, engine=NoModels())
    return create_app(settings, service), service


def _form_schema(openapi: dict, path: str) -> dict:
    ref = openapi["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"]
    return openapi["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"]


@pytest.mark.parametrize("path, media", [("/swap", "image"), ("/jobs", "video")])
def test_serve_forms_carry_every_request_option_with_default_and_range(path, media, tmp_path):
    pytest.importorskip("fastapi")
    app_, service = _fake_app(tmp_path)
    try:
        fields = _form_schema(app_.openapi(), path)
    finally:
        service.close()
    wanted = {s.name for s in SWAP_OPTIONS if s.scope == "request" and media in s.media}
    assert set(fields) - {"source", "target", "reference"} == wanted
    assert ("detect_every" in fields) == (media == "video") and "workers" not in fields and "providers" not in fields
    for name in wanted:
        spec, field = OPTION_BY_NAME[name], fields[name]
        assert field.get("default") == spec.text_default, name
        assert field.get("description") == spec.help
        assert field.get("minimum", field.get("exclusiveMinimum")) == spec.low, name
        assert field.get("maximum", field.get("exclusiveMaximum")) == spec.high, name
        assert ("exclusiveMaximum" in field) == (spec.high_open and spec.high is not None)
        assert field.get("enum") == (None if spec.choices is None or spec.is_list else list(spec.choices)), name
    if media == "video":
        assert (fields["smooth"]["minimum"], fields["smooth"]["exclusiveMaximum"]) == (0, 1)
    assert fields["score_threshold"]["minimum"] == 0 and fields["score_threshold"]["maximum"] == 1
    assert fields["landmarks"]["enum"] == [5, 68]


def test_job_record_and_ray_setup_carry_every_option(tmp_path):
    from ffkit.toolkit.serve.forms import job_form
    from ffkit.toolkit.serve.jobs import JobStore
    from ffkit.toolkit.serve.limits import WorkQueue

    # the dependency called as FastAPI calls it when no field is sent: every default, as the form spells it
    form = job_form(**{s.name: s.text_default for s in options_for("request", "video")})
    queue = WorkQueue(1, 0)
    try:
        job = JobStore(queue, 1.0).new_job(tmp_path, tmp_path / "out.mp4", 3, options=form.request_values)
    finally:
        queue.shutdown()
    assert set(job.options) == {s.name for s in options_for("request", "video")}
    assert job.options == {s.name: s.default for s in options_for("request", "video")}
    assert json.loads(json.dumps(job.as_dict()))["options"]["mask_regions"] == list(DEFAULT_REGIONS)

    from ffkit.toolkit.ray_batch import SwapSetup

    settings = swap_settings({"detect_every": 3, "smooth": 0.5, "spin": False, "workers": 2,
                              "provider_option": ["cuda:device_id=0"], "providers": "cpu"})
    setup = SwapSetup("m", {}, settings, source=None)
    assert set(setup.settings.values) == set(OPTION_BY_NAME)  # every option, run settings included
    assert setup.settings.tracking.detect_every == 3 and setup.settings.tracking.smooth == 0.5
    assert setup.providers == "cpu" and setup.settings.provider_options == (("CUDAExecutionProvider",
                                                                             (("device_id", "0"),)),)
    assert swap_settings({}).values == {s.name: s.default for s in SWAP_OPTIONS}


# ---------------------------------------------------------------- one message for a bad value

BAD_VALUES = {
    "score_threshold": ("7", "--score-threshold / score_threshold: 7 is out of range, must be from 0 to 1"),
    "smooth": ("1.5", "--smooth / smooth: 1.5 is out of range, must be at least 0 and less than 1"),
    "detect_every": ("0", "--detect-every / detect_every: 0 is out of range, must be at least 1"),
    "mask": ("box,ellipse", "--mask / mask: 'box,ellipse' must be box and/or region (e.g. box,region)"),
    "max_faces": ("-1", "--max-faces / max_faces: -1 is out of range, must be at least 0"),
    "landmarks": ("7", "--landmarks / landmarks: 7 is not one of 5 or 68"),
}


def _multipart(fields: dict, files: dict) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, data) in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _post(app_, path: str, fields: dict, files: dict) -> tuple[int, dict]:
    body, content_type = _multipart(fields, files)
    sent, chunks = [], [{"type": "http.request", "body": body, "more_body": False}]

    async def receive():
        return chunks.pop(0) if chunks else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "path": path,
             "raw_path": path.encode(), "query_string": b"", "root_path": "", "scheme": "http",
             "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    asyncio.run(app_(scope, receive, send))
    return sent[0]["status"], json.loads(b"".join(m.get("body", b"") for m in sent[1:]))


@pytest.mark.parametrize("name", list(BAD_VALUES))
def test_bad_value_same_message_from_cli_and_serve(name, tmp_path):
    pytest.importorskip("fastapi")
    value, message = BAD_VALUES[name]
    out = tmp_path / "out"
    out.mkdir()
    result = invoke("swap", "--source", ASTRONAUT, "--target", ASTRONAUT, "-o", out / "x.png",
                    "--models", tmp_path, OPTION_BY_NAME[name].flag, value)
    line = assert_one_line_error(result, message)
    assert line == f"error: {message}"
    assert list(out.iterdir()) == []
    app_, service = _fake_app(tmp_path / "serve")
    image = Path(ASTRONAUT).read_bytes()
    try:
        status, payload = _post(app_, "/jobs", {name: value},
                                {"source": ("a.jpg", image), "target": ("b.mp4", b"\0" * 64)})
    finally:
        service.close()
    assert (status, payload) == (422, {"error": message})
    with pytest.raises(FfkitError) as caught:
        swap_settings({name: OPTION_BY_NAME[name].kind(value) if name != "mask" else value})
    assert str(caught.value) == message


def test_declaration_checks_ranges_and_lists():
    assert check_values({"mask": "region, box", "mask_regions": "nose,skin"})["mask"] == ("region", "box")
    assert check_values({"mask_regions": "nose, skin,nose"})["mask_regions"] == ("nose", "skin")
    assert check_values({"smooth": 0.999})["smooth"] == 0.999 and check_values({"tile": -1})["tile"] == -1
    for bad in ({"similarity": 1.01}, {"enhance_blend": -0.1}, {"tile": -2}, {"workers": -1},
                {"variant": "fp8"}, {"frame_enhance": "gfpgan_v1.4"}, {"nonsense": 1}):
        with pytest.raises(FfkitError):
            check_values(bad)


# ---------------------------------------------------------------- roles from one table

def test_roles_table_is_the_roles_of_every_recipe_and_the_picker():
    assert ROLES == tuple(ROLE_TABLE) and {r.role for r in REGISTRY.values()} == set(ROLE_TABLE)
    assert PREFERENCE == {name: spec.preference for name, spec in ROLE_TABLE.items()}
    for name, spec in ROLE_TABLE.items():
        fillers = spec.recipes(REGISTRY)
        assert set(fillers) == {r.name for r in REGISTRY.values() if r.role == name}
        assert set(spec.preference) <= set(fillers), name   # the order names only recipes of the role
        if spec.option is not None:
            assert spec.option in OPTION_BY_NAME and not spec.required
    assert wanted_roles(check_values({})) == frozenset()
    assert wanted_roles(check_values({"enhance": True, "mask": "box,region", "landmarks": 68,
                                      "frame_enhance": "auto"})) == {"enhancer", "parser", "landmarker",
                                                                      "frame_enhancer"}
    assert [ROLE_TABLE[r].asked_by for r in ("enhancer", "landmarker", "parser", "frame_enhancer")] == [
        "--enhance", "--landmarks 68", "--mask region", "--frame-enhance"]


def test_missing_role_error_comes_from_the_table(artifacts, tmp_path):
    folder = models_dir(artifacts, tmp_path / "models")
    result = invoke("swap", "--source", ASTRONAUT, "--target", ASTRONAUT, "-o", tmp_path / "o.png",
                    "--models", folder, "--landmarks", "68")
    assert_one_line_error(result, ROLE_TABLE["landmarker"].missing(["fan_2dfan4"]), "in the models folder")


# ---------------------------------------------------------------- Ray carries every option

def _frames(path: Path) -> list[np.ndarray]:
    return list(iter_frames(path)) if path.suffix == ".mp4" else [read_image(path)]


@needs_ray
@pytest.mark.slow
def test_ray_batch_equals_local_batch_with_tracking_and_provider_options(cluster, artifacts, tmp_path):  # noqa: F811
    folder = models_dir(artifacts, tmp_path / "models")
    source = make_source(tmp_path)
    (tmp_path / "clips").mkdir()
    clips = make_clips(tmp_path / "clips")
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for clip in FRAMES:   # the short videos (a face found in some of them) and a photo
        shutil.copy(clips / clip, inputs / clip)
    shutil.copy(ASTRONAUT, inputs / f"photo{Path(ASTRONAUT).suffix}")
    common = ["--source", source, "--models", folder, "--score-threshold", "0.8", "--max-faces", "2",
              "--providers", "cpu", "--workers", "2"]
    options = ["--detect-every", "3", "--smooth", "0.5", "--provider-option", "cuda:device_id=0", "--no-spin"]
    outputs = {}
    with deadline(300, "the local and Ray batches"):
        for how, extra in (("plain", []), ("local", options), ("ray", [*options, "--ray", "local"])):
            result = invoke("swap", "--target", inputs, "-o", tmp_path / how, *common, *extra)
            assert result.exit_code == 0, result.output
            outputs[how] = {p.name: p.read_bytes() for p in sorted((tmp_path / how).iterdir())
                            if p.name != "ffkit-batch.json"}
    assert sorted(outputs["ray"]) == sorted(p.name for p in inputs.iterdir()) == sorted(outputs["local"])
    assert outputs["ray"] == outputs["local"]   # byte-identical, image and video
    # the tracking options change a video's pixels, so the equality above is no accident
    changed = [any(not np.array_equal(a, b) for a, b in zip(_frames(tmp_path / "plain" / clip),
                                                           _frames(tmp_path / "ray" / clip))) for clip in FRAMES]
    assert any(changed), changed
