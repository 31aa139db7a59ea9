"""Torch-free face-swap runtime: onnxruntime + numpy + OpenCV + PyAV.

Stages with numpy contracts (frames are ``H x W x 3`` uint8 BGR)::

    from ffkit.runtime import (SessionPool, resolve_providers, pick_models, Pipeline, SwapOptions,
                               swap_file)

    models = pick_models("models/")                        # by recorded recipe, not file name
    pool = SessionPool(resolve_providers("auto"))          # one cached session per artifact
    pipe = Pipeline.from_models(models, pool, SwapOptions(select="largest"))
    source = pipe.prepare_source(read_image("face.jpg"))
    result = pipe.process_frame(frame, source)             # -> FrameResult(image, faces, regions)
    swap_file(pipe, source, "in.mp4", "out.mp4", workers=2)

The modules, one job each::

    sessions            the onnxruntime session factory, providers, the session cache
    swap_options        the one declaration of the swap options (CLI, serve, jobs, Ray derive from it)
    models              pick each role's artifact from a models folder (by recorded recipe, roles table)
    detection           FaceDetector: the detector interface (size, normalise, forward, decode, NMS)
    detectors/          one module per detector family, one table (open_detector by the recipe's decode)
    retinaface_decode   RetinaFace post-processing: priors, box/landmark decoding
    detector            Detector (RetinaFace on the interface), draw_detections
    geometry            similarity estimation, warp_face, paste_back, paste_region
    templates           template point sets and each model's alignment matrix
    embedder            Embedder: ArcFace identity embeddings
    swapper             Swapper: inswapper_128 / SimSwap swap, pasted back
    enhancer            Enhancer: GFPGAN restoration
    frame_pipeline      Pipeline: detect -> select -> embed -> swap -> enhance, per frame
    swap_files          swap_image / swap_video / swap_file: files, worker threads, ordering
    media/              images, video_in, video_out (+ common): BGR image and video I/O

Lower level: :class:`Detector`, :class:`Embedder`, :class:`Swapper`, :class:`Enhancer`,
:mod:`.geometry` (warp, paste back), :mod:`.templates` (templates, alignment matrices),
:mod:`.retinaface_decode`, :mod:`.media`. Nothing here imports torch.
"""

from .detector import Detector, DetectParams, draw_detections, resize_for_detection
from .embedder import Embedder, cosine_similarity, normalize
from .enhancer import Enhancer
from .frame_pipeline import FaceRecord, FrameResult, Pipeline, SourceFace, SwapOptions, select_faces
from .media import MediaError, VideoWriter, iter_frames, probe_video, read_image, write_image
from .models import ModelRef, ModelSelection, identify, pick_models, read_emap, require_role, scan_models
from .retinaface_decode import Detections, detect_faces
from .sessions import SessionPool, default_threads, resolve_providers
from .swap_files import SwapSummary, check_output_path, swap_file, swap_image, swap_video
from .swapper import Swapper

__all__ = [
    "DetectParams", "Detector", "draw_detections", "resize_for_detection", "Embedder", "cosine_similarity", "normalize",
    "Enhancer", "MediaError", "VideoWriter", "iter_frames", "probe_video", "read_image", "write_image",
    "ModelRef", "ModelSelection", "identify", "pick_models", "read_emap", "require_role", "scan_models",
    "FaceRecord", "FrameResult", "Pipeline", "SourceFace", "SwapOptions", "SwapSummary",
    "check_output_path", "select_faces", "swap_file", "swap_image", "swap_video", "Detections",
    "detect_faces", "SessionPool", "default_threads", "resolve_providers", "Swapper",
]
