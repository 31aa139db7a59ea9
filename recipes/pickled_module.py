"""Reading a whole pickled ``nn.Module`` (``torch.save(model)``) without running any of its code (needs torch).

Some research code publishes ``torch.save(model)`` rather than a state_dict (SimSwap's
``arcface_checkpoint.tar``). Unpickling that normally imports the authors' classes and runs
whatever the pickle names. Here the pickle is read by :class:`RestrictedUnpickler`, whose
``find_class`` (the only way a pickle reaches code) answers with:

* an empty :class:`PickledObject` stub for each class the recipe declares (``pickled_classes``):
  the pickle's BUILD only fills the stub's ``__dict__``, nothing of the original class exists;
* ``collections.OrderedDict``, ``set``, ``dict``, ``collections.defaultdict`` (containers);
* torch's tensor-rebuild functions (``torch._utils._rebuild_tensor_v2``, ``_rebuild_parameter``...);

and refuses anything else (``os.system``, ``builtins.eval``...) before it is called. Storages are
built by torch's own loader (zip and legacy formats). :func:`module_state_dict` then walks the
stubs' ``_parameters``, ``_buffers`` and ``_modules`` in the order ``nn.Module.state_dict`` uses.
"""

from __future__ import annotations

import _compat_pickle
import collections
import pickle
import types
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import ClassVar

import torch

__all__ = ["PickledObject", "RestrictedUnpickler", "is_module", "is_torchscript", "module_state_dict",
           "restricted_pickle_module"]

#: Globals any pickled module may name besides its own classes: containers and tensor rebuilds.
SAFE_GLOBALS = {
    "collections.OrderedDict": collections.OrderedDict,
    "collections.defaultdict": collections.defaultdict,
    "builtins.set": set,
    "builtins.dict": dict,
    **{f"torch._utils.{name}": getattr(torch._utils, name)
       for name in ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_parameter", "_rebuild_parameter_with_state")
       if hasattr(torch._utils, name)},
}


class PickledObject:
    """An instance the pickle built from a declared class: an empty object whose ``__dict__`` holds
    what was saved (for a module: ``_parameters``, ``_buffers``, ``_modules``...). No method of
    the original class exists on it, so nothing of the file's code can run."""

    pickled_as = ""
    dump_patches = False  # read by torch's legacy loader when the saved class source differs

    def __repr__(self) -> str:
        return f"<stub of {self.pickled_as}>"


def _stub(global_name: str) -> type:
    return type(global_name.rsplit(".", 1)[-1], (PickledObject,), {"pickled_as": global_name})


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` returns only stubs of ``stubs`` (global names),
    :data:`SAFE_GLOBALS`, or raises ``refuse(global_name)`` (an exception) for anything else.

    Subclass it with the two class attributes set (see :func:`restricted_pickle_module`)."""

    stubs: ClassVar[dict[str, type]] = {}
    refuse: ClassVar[Callable[[str], Exception]] = staticmethod(
        lambda name: pickle.UnpicklingError(f"refused global {name}"))

    def find_class(self, module: str, name: str):
        # Python 2 names (``__builtin__.set`` in protocol-2 pickles), mapped as pickle itself does
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        full = f"{module}.{name}"
        if full in self.stubs:
            return self.stubs[full]
        if full in SAFE_GLOBALS:
            return SAFE_GLOBALS[full]
        raise self.refuse(full)


def restricted_pickle_module(classes: Iterable[str], refuse: Callable[[str], Exception]) -> types.ModuleType:
    """A ``pickle_module`` for ``torch.load(..., weights_only=False, pickle_module=M)``: its
    ``Unpickler`` and ``load`` go through :class:`RestrictedUnpickler` with a stub for every
    global name in ``classes`` (``"models.arcface_models.ResNet"``); ``refuse(name)`` makes the
    exception raised for any other global."""
    unpickler = type("Unpickler", (RestrictedUnpickler,),
                     {"stubs": {c: _stub(c) for c in classes}, "refuse": staticmethod(refuse)})
    module = types.ModuleType("ffkit_restricted_pickle")
    module.Unpickler = unpickler
    module.load = lambda file, **kwargs: unpickler(file, **kwargs).load()
    return module


def is_torchscript(path: str | Path) -> bool:
    """Whether ``path`` is a TorchScript archive (``torch.load`` would hand it to ``torch.jit.load``)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n == "constants.pkl" or n.endswith("/constants.pkl") for n in archive.namelist())


def is_module(obj: object) -> bool:
    """Whether ``obj`` is a stub of a pickled ``nn.Module`` (``_parameters``, ``_buffers`` and
    ``_modules`` are dicts in its state)."""
    return isinstance(obj, PickledObject) and all(
        isinstance(vars(obj).get(k), dict) for k in ("_parameters", "_buffers", "_modules"))


def module_state_dict(root: PickledObject, prefix: str = "", _above: tuple = ()) -> dict[str, torch.Tensor]:
    """The state_dict of a pickled module tree, as ``nn.Module.state_dict`` orders it: per module
    its parameters (None skipped), its persistent buffers (None and ``_non_persistent_buffers_set``
    skipped), then each child in insertion order, keys ``child.name``. Tensors come back detached.
    A child that is its own ancestor (a cycle, which no real module tree has) is not entered."""
    out: dict[str, torch.Tensor] = {}
    _above = (*_above, id(root))
    state = vars(root)
    skip = state.get("_non_persistent_buffers_set")
    skip = skip if isinstance(skip, set) else set()
    for group in ("_parameters", "_buffers"):
        for name, value in state[group].items():
            if value is not None and not (group == "_buffers" and name in skip):
                out[prefix + name] = value.detach() if isinstance(value, torch.Tensor) else value
    for name, child in state["_modules"].items():
        if is_module(child) and id(child) not in _above:  # None (an unset child) holds nothing
            out.update(module_state_dict(child, f"{prefix}{name}.", _above))
    return out
