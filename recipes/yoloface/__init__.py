"""YOLOFace (derronqi/yolov8-face, FaceFusion's ``yoloface_8n.onnx``): declared to adopt the
published ONNX file; nothing to export (``ffkit export`` / ``build`` refuse it).

What FaceFusion's ``face_detector.detect_with_yolo_face`` reads: one input ``1 x 3 x 640 x 640``
fed the BGR frame (as OpenCV reads it, no channel swap) divided by 255, zero-padded bottom/right;
one output ``1 x 20 x A``: per prediction ``cx, cy, w, h`` (input pixels), the face score, then
5 key points ``(x, y, score)``.
"""

from ..scrfd import BUDGETS
from ..spec import DetectorDecode, PixelFormat, Recipe, TensorSpec, Tolerance

#: FaceFusion normalize_detect_frame(..., [0, 1]) on the BGR frame.
PIXELS = PixelFormat(colour="BGR", mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0))

#: FaceFusion's only face_detector_size for yolo_face (choices.face_detector_set).
DECODE = DetectorDecode("yoloface", input_size=(640, 640))

RECIPES = (
    Recipe(
        name="yoloface_8n", family="yoloface", role="detector",
        summary="YOLOFace (yolov8n-face) detector: boxes, scores and 5 key points; adopt-only (FaceFusion ONNX)",
        inputs=(TensorSpec("input", (1, 3, "H", "W"), "BGR / 255, NCHW, 640 x 640 in FaceFusion",
                           sample=("uniform", 0.0, 1.0)),),
        outputs=(TensorSpec("output0", (1, 20, "A"), "per prediction cx, cy, w, h, score, 5 x (x, y, score)"),),
        architecture="", tolerance=Tolerance(atol=1e-4, rtol=1e-4), pixels=PIXELS,
        budgets=BUDGETS,   # SCRFD's: carried over from the trained RetinaFace, unmeasured on YOLOFace
        sample_dims={"N": 1, "H": 640, "W": 640}, alt_dims={"N": 1, "H": 640, "W": 640},
        dynamic_batch=False, detector_decode=DECODE,
    ),
)
