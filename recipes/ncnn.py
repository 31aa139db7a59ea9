"""Reading an ncnn model (a ``.param`` text file and its ``.bin``) as arrays, without ncnn (numpy only).

The format, as Tencent/ncnn reads it (``src/net.cpp`` ``load_param``, ``src/paramdict.cpp``,
``src/modelbin.cpp`` ``ModelBinFromDataReader::load``, ``src/layer/convolution.cpp``
``load_model``):

``.param`` (text): the magic ``7767517``; ``layer_count blob_count``; then one line per layer,
``type name bottom_count top_count bottom... top... key=value...``. A key ``k`` in 0..N holds an
int or a float (a float when the text has ``.``, ``e`` or ``E``); a key ``-23300 - k`` holds the
array ``k`` as ``count,v1,v2,...``. A Convolution reads ``0`` num_output, ``1`` kernel_w, ``11``
kernel_h (default kernel_w), ``2``/``12`` dilation, ``3``/``13`` stride, ``4``/``14`` pad,
``5`` bias_term, ``6`` weight_data_size, ``8`` int8_scale_term, ``9`` activation_type and
``-23310`` its parameters (``9=2 -23310=1,0.2``: leaky ReLU, slope 0.2, fused).

``.bin``: the layers' weights in the order of the ``.param``'s lines, back to back, nothing
else. A Convolution stores ``weight_data`` as ``ModelBin::load(weight_data_size, 0)``: a 4-byte
tag, then for tag ``0x01306B47`` float16 values (padded to 4 bytes), for tag ``0`` (or
``0x0002C056``) float32 values; other tags are int8 or codebook-quantized weights, which this
reader refuses. With ``bias_term`` the ``num_output`` float32 biases follow as
``load(num_output, 1)``: raw, no tag. The weights are laid out ``out x in x kh x kw``, as in
PyTorch's ``Conv2d.weight``.

Only Convolution layers are read; a layer of another type that stores weights (anything not in
:data:`WEIGHTLESS`) is refused, naming it, since its bytes could not be skipped. Every failure
is a one-line :class:`~ffkit.recipes.errors.CheckpointError` naming the file. A recipe family
that can be read from ncnn files has a ``ncnn`` module with ``state_dict(model, recipe)``,
mapping the convolutions (in the ``.param``'s order) onto its published keys; see
:func:`read_state_dict`.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import CheckpointError
from .paths import require_file

__all__ = ["MAGIC", "TAG_FP16", "TAG_FP32", "WEIGHTLESS", "NcnnLayer", "NcnnConv", "NcnnModel", "pair_paths",
           "is_ncnn", "read_param", "read_model", "read_state_dict"]

MAGIC = "7767517"
#: ``ModelBin::load`` tags: float16 data; float32 data (``0``, or ``0x0002C056``: float32 "with extra scaling").
TAG_FP16 = 0x01306B47
TAG_FP32 = (0x00000000, 0x0002C056)
TAG_INT8 = 0x000D4B38
#: Array keys are written ``-23300 - index``.
ARRAY_KEY = -23300
#: A ``.param`` larger than this is not a model description (the largest zoo models are ~200 KB).
MAX_PARAM_BYTES = 16 << 20
#: Layer types whose ``load_model`` reads nothing from the ``.bin``.
WEIGHTLESS = frozenset({
    "Input", "Split", "Concat", "Slice", "Eltwise", "BinaryOp", "UnaryOp", "Interp", "ReLU", "Sigmoid", "TanH",
    "Clip", "Crop", "Pooling", "PixelShuffle", "Reshape", "Permute", "Flatten", "Dropout", "Noop", "Softmax",
    "Swish", "HardSigmoid", "HardSwish", "Mish", "ELU", "Padding", "Exp", "Log", "Power", "Reduction",
})


@dataclass(frozen=True)
class NcnnLayer:
    """One line of a ``.param``: ``params`` maps each key to an int, a float or (array keys,
    stored under their index ``k``, not ``-23300 - k``) a tuple of numbers; ``line`` is 1-based."""

    type: str
    name: str
    bottoms: tuple[str, ...]
    tops: tuple[str, ...]
    params: dict
    array_params: dict
    line: int

    def get(self, key: int, default=None):
        return self.params.get(key, default)


@dataclass(frozen=True)
class NcnnConv:
    """A Convolution layer and its stored tensors: ``weight`` ``out x in x kh x kw`` in the stored
    dtype (float16 or float32, the ``.bin``'s values exactly), ``bias`` float32 or None, and the
    byte ``offset`` of its tag in the ``.bin``."""

    layer: NcnnLayer
    weight: np.ndarray
    bias: np.ndarray | None
    offset: int

    @property
    def activation(self) -> tuple[int, tuple]:
        """``(activation_type, parameters)``: 0 none, 1 ReLU, 2 leaky ReLU (slope), 3 clip ..."""
        return int(self.layer.get(9, 0)), tuple(self.layer.array_params.get(10, ()))


@dataclass(frozen=True)
class NcnnModel:
    param_path: Path
    bin_path: Path
    layers: tuple[NcnnLayer, ...]
    convolutions: tuple[NcnnConv, ...]

    def producer(self, blob: str) -> NcnnLayer | None:
        """The layer whose tops include ``blob`` (None for no such layer)."""
        return next((layer for layer in self.layers if blob in layer.tops), None)


def pair_paths(path: str | Path) -> tuple[Path, Path]:
    """``(stem.param, stem.bin)`` from either file of the pair."""
    path = Path(path)
    return path.with_suffix(".param"), path.with_suffix(".bin")


def _starts_with_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(len(MAGIC) + 2)
    except OSError:
        return False
    return head[:len(MAGIC)] == MAGIC.encode() and (len(head) == len(MAGIC) or head[len(MAGIC):][:1] in b"\r\n \t")


def is_ncnn(path: str | Path) -> bool:
    """Whether ``path`` is (or claims to be) one file of an ncnn pair: a ``.param`` file, a file
    starting with the magic ``7767517``, or a ``.bin`` with a ``.param`` beside it that starts so
    (a ``.bin`` alone may be a PyTorch ``pytorch_model.bin``)."""
    path = Path(path)
    if path.suffix == ".param" or (path.is_file() and _starts_with_magic(path)):
        return True
    param = path.with_suffix(".param")
    return path.suffix == ".bin" and param.is_file() and _starts_with_magic(param)


def _number(text: str, path: Path, line: int):
    try:
        return float(text) if any(c in text for c in ".eE") else int(text)
    except ValueError:
        raise CheckpointError(f"{path}: line {line}: {text!r} is not a number (malformed ncnn param)") from None


def _layer(fields: list[str], path: Path, line: int) -> NcnnLayer:
    if len(fields) < 4:
        raise CheckpointError(f"{path}: line {line}: expected 'type name bottom_count top_count ...', "
                              f"got {len(fields)} fields (malformed ncnn param)")
    kind, name = fields[0], fields[1]
    try:
        n_in, n_out = int(fields[2]), int(fields[3])
    except ValueError:
        raise CheckpointError(f"{path}: line {line}: layer {name}: bottom/top counts {fields[2]!r} {fields[3]!r} "
                              "are not integers (malformed ncnn param)") from None
    if n_in < 0 or n_out < 0 or len(fields) < 4 + n_in + n_out:
        raise CheckpointError(f"{path}: line {line}: layer {name} declares {n_in} bottoms and {n_out} tops but lists "
                              f"{len(fields) - 4} names and values (malformed ncnn param)")
    bottoms = tuple(fields[4:4 + n_in])
    tops = tuple(fields[4 + n_in:4 + n_in + n_out])
    params, arrays = {}, {}
    for item in fields[4 + n_in + n_out:]:
        key, eq, value = item.partition("=")
        try:
            key = int(key)
        except ValueError:
            key = None
        if not eq or key is None:
            raise CheckpointError(f"{path}: line {line}: layer {name}: {item!r} is not key=value "
                                  "(malformed ncnn param)")
        if key <= ARRAY_KEY:
            parts = value.split(",")
            count = _number(parts[0], path, line)
            values = tuple(_number(v, path, line) for v in parts[1:])
            if not isinstance(count, int) or count != len(values):
                raise CheckpointError(f"{path}: line {line}: layer {name}: array {key} declares {parts[0]} values "
                                      f"and holds {len(values)} (malformed ncnn param)")
            arrays[ARRAY_KEY - key] = values
        else:
            params[key] = _number(value, path, line)
    return NcnnLayer(kind, name, bottoms, tops, params, arrays, line)


def read_param(path: str | Path) -> tuple[NcnnLayer, ...]:
    """The layers of a text ``.param`` file (one-line CheckpointError naming it when malformed)."""
    path = require_file(path, CheckpointError, empty="empty file, not an ncnn param")
    if path.stat().st_size > MAX_PARAM_BYTES:
        raise CheckpointError(f"{path}: {path.stat().st_size >> 20} MiB, not an ncnn param text file "
                              f"(over {MAX_PARAM_BYTES >> 20} MiB)")
    try:
        text = path.read_bytes().decode("ascii")
    except UnicodeDecodeError:
        raise CheckpointError(f"{path}: not an ncnn param text file (binary content; a .param.bin or another "
                              "format is not read)") from None
    lines = [(n, line.split()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines or lines[0][1] != [MAGIC]:
        first = " ".join(lines[0][1])[:40] if lines else ""
        raise CheckpointError(f"{path}: not an ncnn param file (first line {first!r}, expected the magic {MAGIC})")
    if len(lines) < 2 or len(lines[1][1]) != 2 or not all(v.isdigit() for v in lines[1][1]):
        raise CheckpointError(f"{path}: line 2 must be 'layer_count blob_count' (malformed ncnn param)")
    layer_count = int(lines[1][1][0])
    layers = tuple(_layer(fields, path, n) for n, fields in lines[2:])
    if len(layers) != layer_count:
        raise CheckpointError(f"{path}: declares {layer_count} layers and holds {len(layers)} "
                              "(truncated or malformed ncnn param)")
    return layers


def _conv_shape(layer: NcnnLayer, path: Path) -> tuple[int, int, int, int]:
    out, kw = layer.get(0), layer.get(1)
    kh, size = layer.get(11, kw), layer.get(6)
    if not all(isinstance(v, int) and v > 0 for v in (out, kw, kh, size)) or size % (out * kw * kh):
        raise CheckpointError(f"{path}: line {layer.line}: Convolution {layer.name}: num_output {out}, kernel "
                              f"{kw}x{kh} and weight_data_size {size} do not make a weight (malformed ncnn param)")
    return out, size // (out * kw * kh), kh, kw


class _Reader:
    """Sequential reads from the ``.bin``'s bytes with one-line errors naming it."""

    def __init__(self, path: Path):
        self.path, self.data, self.pos = path, path.read_bytes(), 0

    def take(self, count: int, what: str) -> bytes:
        if self.pos + count > len(self.data):
            raise CheckpointError(f"{self.path}: truncated: {what} needs {count} bytes at offset {self.pos}, the file "
                                  f"has {len(self.data) - self.pos} left (not the .bin of this .param?)")
        chunk = self.data[self.pos:self.pos + count]
        self.pos += count
        return chunk


def _read_conv(reader: _Reader, layer: NcnnLayer, param: Path) -> NcnnConv:
    shape = _conv_shape(layer, param)
    if layer.get(8, 0):
        raise CheckpointError(f"{param}: Convolution {layer.name} is int8-quantized (8={layer.get(8)}); "
                              "only float32/float16 ncnn weights are read")
    offset, count = reader.pos, int(np.prod(shape))
    tag = int.from_bytes(reader.take(4, f"the weight tag of {layer.name}"), "little")
    if tag == TAG_FP16:
        raw = reader.take((count * 2 + 3) // 4 * 4, f"the float16 weights of {layer.name}")
        weight = np.frombuffer(raw, "<f2", count).reshape(shape)
    elif tag in TAG_FP32:
        weight = np.frombuffer(reader.take(count * 4, f"the float32 weights of {layer.name}"), "<f4").reshape(shape)
    else:
        kind = "int8" if tag == TAG_INT8 else "codebook-quantized or unknown"
        raise CheckpointError(f"{reader.path}: offset {offset}: the weights of {layer.name} carry tag 0x{tag:08X} "
                              f"({kind}); only float32/float16 ncnn weights are read (or not the .bin of this .param)")
    bias = None
    if layer.get(5, 0):
        bias = np.frombuffer(reader.take(shape[0] * 4, f"the biases of {layer.name}"), "<f4")
    bad = next((a for a in (weight, bias) if a is not None and not np.isfinite(a).all()), None)
    if bad is not None:
        raise CheckpointError(f"{reader.path}: offset {offset}: {layer.name} holds NaN or Inf values "
                              "(damaged, or not the .bin of this .param)")
    return NcnnConv(layer, weight.astype(weight.dtype.newbyteorder("="), copy=True),
                    None if bias is None else bias.astype(np.float32, copy=True), offset)


def read_model(path: str | Path) -> NcnnModel:
    """Read an ncnn pair from either of its files (``stem.param`` and ``stem.bin`` side by side)."""
    param, binary = pair_paths(path)
    layers = read_param(param)
    require_file(binary, CheckpointError, empty="empty file, not an ncnn .bin")
    if binary.stat().st_size > (4 << 30):
        raise CheckpointError(f"{binary}: {binary.stat().st_size >> 30} GiB, over the 4 GiB an ncnn .bin is read to")
    reader, convs = _Reader(binary), []
    for layer in layers:
        if layer.type == "Convolution":
            convs.append(_read_conv(reader, layer, param))
        elif layer.type not in WEIGHTLESS:
            raise CheckpointError(f"{param}: line {layer.line}: layer type {layer.type} ({layer.name}) stores "
                                  "weights this reader does not read (only Convolution)")
    if reader.pos != len(reader.data):
        raise CheckpointError(f"{binary}: {len(reader.data) - reader.pos} bytes follow the last layer's weights "
                              f"(offset {reader.pos}): not the .bin of {param.name}")
    return NcnnModel(param, binary, layers, tuple(convs))


def read_state_dict(path: str | Path, recipe) -> dict[str, np.ndarray]:
    """A recipe's published state_dict from an ncnn pair, through its family's ``ncnn`` module
    (``ffkit.recipes.<family>.ncnn.state_dict(model, recipe)``). Arrays keep the stored dtype."""
    param = pair_paths(path)[0]
    module_name = f"{__package__}.{recipe.family}.ncnn"
    if importlib.util.find_spec(module_name) is None:
        raise CheckpointError(f"{param}: an ncnn model; {recipe.name} is not read from ncnn files "
                              "(give its published PyTorch checkpoint)")
    return importlib.import_module(module_name).state_dict(read_model(path), recipe)
