"""SCRFD face detectors (insightface): declared to adopt the published ONNX files; nothing to export.

insightface ships SCRFD only as ONNX (buffalo_l's ``det_10g.onnx``, the ``scrfd_*_bnkps`` files,
FaceFusion's ``scrfd_2.5g.onnx`` and ``retinaface_10g.onnx``), so these recipes have no PyTorch
architecture: ``ffkit export`` / ``build`` refuse them, every other command takes the file.

What insightface's ``model_zoo/scrfd.py`` reads (``SCRFD``): one input ``N x 3 x H x W``, fed
``(RGB - 127.5) / 128``; outputs read BY POSITION, never by name (buffalo_l's are numbers whose
sorted order is not their order): per stride the face scores (``A_s x 1``), then the box distances
(``A_s x 4``, stride units), then the key points (``A_s x 10``), ``A_s = (H // s) * (W // s) *
anchors``; rank 3 (``1 x A_s x k``) for a batched export. 9 outputs: strides 8, 16, 32 with 2
anchors per cell and key points; 15: strides 8 ... 128 with 1 anchor; 6 and 10: the same without
key points, whose faces cannot be aligned (recognised so that one line says so).

The published sizes are named by parameter count (the SCRFD README's KPS models: 500M 0.57 M,
2.5G 0.82 M, 10G 4.23 M, within adoption's 10%); a file of another size is the plain ``scrfd``.
"""

from ..retinaface import BUDGETS as RETINAFACE_BUDGETS
from ..spec import DetectorDecode, FaceBudget, PixelFormat, Recipe, TensorSpec, Tolerance

#: insightface SCRFD.forward: cv2.dnn.blobFromImage(img, 1 / 128, mean 127.5, swapRB=True).
PIXELS = PixelFormat(colour="RGB", mean=(127.5, 127.5, 127.5), std=(128.0, 128.0, 128.0))

#: insightface FaceAnalysis' det_size (640, 640), as roop, Deep-Live-Cam and FaceFusion's default
#: use it: the size a file with a dynamic input is fed (a fixed-size file is fed its own size).
DET_SIZE = (640, 640)

#: The 3-stride heads' anchors (configs/scrfd/scrfd_*_bnkps.py: base sizes 16, 64, 256, scales 1
#: and 2). The 5-stride head has 1 anchor per cell; the decode reads only the count per stride.
THREE = DetectorDecode("scrfd", strides=(8, 16, 32), anchor_sizes=((16, 32), (64, 128), (256, 512)),
                       input_size=DET_SIZE)
FIVE = DetectorDecode("scrfd", strides=(8, 16, 32, 64, 128),
                      anchor_sizes=((16,), (32,), (64,), (128,), (256,)), input_size=DET_SIZE)

#: Budgets judged on the decoded faces. NOT measured on a published SCRFD (none can be downloaded
#: here): the face criteria are the trained RetinaFace mobilenet0.25's (recipes.retinaface), whose
#: wrapped graph is the SCRFD file the tests run; the raw criterion (no face to judge) is a
#: relative L2 per head, loose because SCRFD's heads are unmeasured.
BUDGETS = {kind: FaceBudget("rel_l2", 0.05 if kind == "fp16" else 0.25,
                            "raw: relative L2 of each head, unmeasured on SCRFD weights. Faces: the trained "
                            "RetinaFace's criteria (see recipes.retinaface), carried over unmeasured",
                            min_iou=b.min_iou, max_landmark_error=b.max_landmark_error, score_margin=b.score_margin,
                            max_median_score=b.max_median_score)
           for kind, b in RETINAFACE_BUDGETS.items()}

#: Published SCRFD KPS parameter counts (detection/scrfd/README.md, #Params(M)).
SIZES = {"500m": 570_000, "2.5g": 820_000, "10g": 4_230_000}


def _outputs(strides: tuple[int, ...], batched: bool, kps: bool) -> tuple[TensorSpec, ...]:
    heads = [("score", 1, "face probability (sigmoid)"), ("bbox", 4, "box distances l, t, r, b in stride units")]
    if kps:
        heads.append(("kps", 10, "5 key points dx, dy from the anchor in stride units"))
    return tuple(TensorSpec(f"{kind}_{s}", (("N", f"A{s}") if batched else (f"A{s}",)) + (width,), what)
                 for kind, width, what in heads for s in strides)


def _recipe(name: str, decode: DetectorDecode, batched: bool, kps: bool, num_params: int | None) -> Recipe:
    layout = f"{len(decode.strides)} strides, {len(decode.anchor_sizes[0])} anchor(s) per cell"
    rank = "batched (1 x A x k)" if batched else "unbatched (A x k)"
    points = "key points" if kps else "NO key points (cannot be aligned)"
    return Recipe(
        name=name, family="scrfd", role="detector",
        summary=f"SCRFD face detector (insightface ONNX, {layout}, {points}, {rank}); adopt-only",
        inputs=(TensorSpec("input.1", ("N" if batched else 1, 3, "H", "W"), "RGB (x - 127.5) / 128, NCHW",
                           sample=("uniform", -1.0, 1.0)),),
        outputs=_outputs(decode.strides, batched, kps),
        architecture="", tolerance=Tolerance(atol=1e-4, rtol=1e-4), budgets=BUDGETS,
        pixels=PIXELS, sample_dims={"N": 1, "H": 640, "W": 640}, alt_dims={"N": 1, "H": 320, "W": 480},
        dynamic_batch=False, num_params=num_params, detector_decode=decode,
    )


def _all() -> tuple[Recipe, ...]:
    found = []
    for batched, tail in ((False, ""), (True, "_batched")):
        found += [_recipe(f"scrfd_{size}{tail}", THREE, batched, True, count) for size, count in SIZES.items()]
        found += [_recipe(f"scrfd{tail}", THREE, batched, True, None),
                  _recipe(f"scrfd_5s{tail}", FIVE, batched, True, None),
                  _recipe(f"scrfd_nokps{tail}", THREE, batched, False, None),
                  _recipe(f"scrfd_5s_nokps{tail}", FIVE, batched, False, None)]
    return tuple(found)


RECIPES = _all()
