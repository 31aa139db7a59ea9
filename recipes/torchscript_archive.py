"""Reading the parameters and buffers of a TorchScript archive without running it (needs torch).

A ``torch.jit.save`` file is a zip holding, under one top folder, ``data.pkl`` (the module tree,
pickled), ``data/<key>`` (one raw little-endian record per tensor storage), ``code/`` (the
TorchScript source of every class), ``constants.pkl`` and ``version``. In ``data.pkl`` each
module is an instance of a ``__torch__.<qualified class name>`` global (``__torch__.face_alignment
.models.fan.FAN``, ``__torch__.torch.nn.modules.conv.___torch_mangle_3.Conv2d`` ...) whose state is
a dict of its attributes: tensors (its parameters and buffers), sub-modules, and plain values
(``training``...). A tensor is ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
requires_grad, hooks)`` where ``storage`` is the persistent id ``('storage', torch.FloatStorage,
key, location, numel)``.

What we chose over ``torch.jit.load``, and why: ``torch.jit.load`` compiles and links the
archive's ``code/`` (TorchScript the file's author wrote), deserialises ``constants.pkl`` and
every class, and hands back a runnable module; a hostile or corrupt archive then reaches the
TorchScript compiler and runtime, and ``torch.load(weights_only=True)`` refuses such archives for
that reason. ffkit only needs the tensors, and already has the architecture. So ``data.pkl`` is
read by a restricted unpickler (:class:`ArchiveUnpickler`): any ``__torch__.`` class becomes an
empty stub (whatever the author called it: the reader does not depend on the class names), the
storage types become dtypes, ``_rebuild_tensor_v2`` and ``OrderedDict`` are answered by our own
functions, TorchScript's container tags by identity functions, and every other global
(``os.system``, ``builtins.eval``...) is refused before anything is called. Tensors are rebuilt
from the ``data/<key>`` records read with :mod:`zipfile`; ``code/`` and ``constants.pkl`` are
never read. The state_dict is then the stub tree walked as ``ScriptModule.state_dict`` names it:
per module its tensor attributes in order (keys ``name``), then each sub-module (``child.name``).
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from pathlib import Path

import torch

from .errors import CheckpointError
from .paths import require_file
from .pickled_module import PickledObject

__all__ = ["ScriptObject", "ArchiveUnpickler", "read_state_dict"]

#: The storage classes a TorchScript pickle names, and the dtype of their elements.
STORAGE_DTYPES = {
    "torch.FloatStorage": torch.float32, "torch.DoubleStorage": torch.float64, "torch.HalfStorage": torch.float16,
    "torch.BFloat16Storage": torch.bfloat16, "torch.LongStorage": torch.int64, "torch.IntStorage": torch.int32,
    "torch.ShortStorage": torch.int16, "torch.CharStorage": torch.int8, "torch.ByteStorage": torch.uint8,
    "torch.BoolStorage": torch.bool,
}


class ScriptObject(PickledObject):
    """An instance of a ``__torch__.`` class from the archive: an empty object whose ``__dict__``
    holds the saved attributes. No method of the original class exists on it."""


class _StorageType:
    """What a storage-class global unpickles to: a marker holding the element dtype."""

    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


def _identity(value, *_tags):
    """``torch.jit._pickle.restore_type_tag`` / ``build_*list``: the value itself (a type tag is dropped)."""
    return value


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    """``torch._utils._rebuild_tensor_v2`` on a storage we built: a strided view, detached."""
    if not isinstance(storage, torch.Tensor):
        raise pickle.UnpicklingError("a tensor whose storage is not a data/ record")
    return storage.as_strided(tuple(size), tuple(stride), int(offset)).detach()


SAFE_GLOBALS = {
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor,
    "collections.OrderedDict": collections.OrderedDict,
    "torch.jit._pickle.restore_type_tag": _identity,
    **{f"torch.jit._pickle.build_{kind}list": _identity for kind in ("int", "double", "bool", "tensor")},
}


class ArchiveUnpickler(pickle.Unpickler):
    """Unpickles one archive's ``data.pkl``: stubs for ``__torch__.`` classes, tensors from
    ``read_record(key, size)`` (the bytes of ``data/<key>``, which must hold ``size``),
    :data:`SAFE_GLOBALS`; any other global raises ``refuse(name)`` before it is looked up."""

    def __init__(self, file, read_record, refuse):
        super().__init__(file)
        self._read_record, self._refuse = read_record, refuse
        self._stubs: dict[str, type] = {}
        self._storages: dict[str, torch.Tensor] = {}

    def find_class(self, module: str, name: str):
        full = f"{module}.{name}"
        if module == "__torch__" or module.startswith("__torch__."):
            if full not in self._stubs:
                self._stubs[full] = type(name, (ScriptObject,), {"pickled_as": full})
            return self._stubs[full]
        if full in STORAGE_DTYPES:
            return _StorageType(STORAGE_DTYPES[full])
        if full in SAFE_GLOBALS:
            return SAFE_GLOBALS[full]
        raise self._refuse(full)

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], str) and isinstance(pid[4], int)):
            raise pickle.UnpicklingError(f"unexpected persistent id {str(pid)[:80]}")
        _, kind, key, _location, numel = pid
        if key not in self._storages:
            expected = numel * torch.empty((), dtype=kind.dtype).element_size()
            raw = self._read_record(key, expected)
            flat = torch.frombuffer(bytearray(raw), dtype=kind.dtype) if numel else torch.empty(0, dtype=kind.dtype)
            self._storages[key] = flat
        return self._storages[key]


def _walk(obj: ScriptObject, prefix: str, out: dict[str, torch.Tensor], above: tuple) -> None:
    state = vars(obj)
    for name, value in state.items():
        if isinstance(value, torch.Tensor):
            out[prefix + name] = value
    for name, value in state.items():
        if isinstance(value, ScriptObject) and id(value) not in above:
            _walk(value, f"{prefix}{name}.", out, (*above, id(value)))


def _top_folder(archive: zipfile.ZipFile, path: Path) -> str:
    names = archive.namelist()
    top = names[0].split("/", 1)[0] if names else ""
    if f"{top}/data.pkl" not in names:
        raise CheckpointError(f"{path}: a TorchScript archive without {top or '<folder>'}/data.pkl (truncated?)")
    return top


def read_state_dict(path: str | Path, recipe_name: str) -> dict[str, torch.Tensor]:
    """The parameters and buffers of the TorchScript archive at ``path`` as a state_dict.

    Keys are the module attribute paths (``conv1.weight``, ``m0.b1_4.bn1.running_mean`` ...), in
    ``ScriptModule.state_dict`` order; values are CPU tensors with the saved dtypes and shapes.
    Nothing from the archive runs: see the module docstring. Raises a one-line
    :class:`CheckpointError` naming the file for a refused global, a truncated or malformed
    archive, or one whose root is not a module.
    """
    path = Path(path)
    require_file(path, CheckpointError, empty="empty file, truncated or not a PyTorch checkpoint")

    def refuse(name: str) -> CheckpointError:
        return CheckpointError(f"{path}: refused, its TorchScript data.pkl names the global {name}, which is not a "
                               f"module class, a container or a tensor (nothing from the file was run)")

    try:
        with zipfile.ZipFile(path) as archive:
            top = _top_folder(archive, path)
            order = archive.read(f"{top}/byteorder").strip() if f"{top}/byteorder" in archive.namelist() else b""
            if order not in (b"", b"little"):   # no record: written before torch 2.1, little-endian
                raise CheckpointError(f"{path}: a {order.decode(errors='replace')}-endian TorchScript archive, "
                                      "which ffkit does not read")

            def read_record(key: str, size: int) -> bytes:
                name = f"{top}/data/{key}"
                declared = archive.getinfo(name).file_size          # checked before anything is inflated
                if declared != size:
                    raise pickle.UnpicklingError(f"record {name} holds {declared} bytes, its tensor needs {size}")
                return archive.read(name)

            unpickler = ArchiveUnpickler(io.BytesIO(archive.read(f"{top}/data.pkl")), read_record, refuse)
            root = unpickler.load()
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, KeyError, EOFError, pickle.UnpicklingError, ValueError, TypeError,
            AttributeError, RuntimeError, IndexError) as err:
        text = str(err).strip().splitlines()[0][:120] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: a TorchScript archive ffkit cannot read ({text})") from None
    if not isinstance(root, ScriptObject):
        raise CheckpointError(f"{path}: a TorchScript archive whose data.pkl holds a {type(root).__name__}, "
                              f"not a {recipe_name} module")
    out: dict[str, torch.Tensor] = {}
    _walk(root, "", out, (id(root),))
    return out
