"""Safe checkpoint reading and strict matching against a recipe's architecture (needs torch).

``torch.load(..., weights_only=True)`` only: a checkpoint whose pickle wants to run code is
refused, never executed. Every failure is a one-line :class:`CheckpointError` naming the file.
"""

from __future__ import annotations

import importlib
import pickle
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from . import ncnn, pickled_module, torchscript_archive
from .errors import CheckpointError
from .paths import require_file, sha256_of  # noqa: F401 - sha256_of: part of this module's API
from .spec import Recipe

SHOW = 3  # how many offending keys a message names


#: A checkpoint archive may unpack to at most this many times its size on disk (plus 64 MiB):
#: torch.save stores its members uncompressed, so a real checkpoint unpacks to about 1x.
MAX_UNPACK_RATIO = 4


def check_archive_sizes(path: Path) -> None:
    """Refuse, before anything is unpacked, a zip checkpoint whose members declare far more bytes
    than the file holds (a zip bomb: 6 MB that inflates to gigabytes), or whose central
    directory cannot be read; other formats pass (the loader judges them)."""
    try:
        if not zipfile.is_zipfile(path):
            return
        with zipfile.ZipFile(path) as archive:
            declared = sum(max(0, m.file_size) for m in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: truncated or not a PyTorch checkpoint ({err})") from None
    size = path.stat().st_size
    if declared > MAX_UNPACK_RATIO * size + (64 << 20):
        raise CheckpointError(f"{path}: its archive members declare {declared / (1 << 20):.0f} MiB unpacked from "
                              f"{size / (1 << 20):.1f} MiB on disk (over {MAX_UNPACK_RATIO}x: a zip bomb?); refused "
                              "before unpacking")


def _torch_load(path: Path, restricted_pickle=None) -> object:
    """``torch.load`` with ``weights_only=True``; or, for a whole pickled module, with
    ``restricted_pickle`` (:func:`~ffkit.recipes.pickled_module.restricted_pickle_module`): the
    only ``weights_only=False`` load ffkit makes, where every global the pickle names goes
    through that unpickler's allowlist (stubs, containers, tensor rebuilds) and nothing else
    can be called. Errors become one-line CheckpointErrors naming the file."""
    require_file(path, CheckpointError, empty="empty file, truncated or not a PyTorch checkpoint")
    check_archive_sizes(path)
    if restricted_pickle is not None and not issubclass(restricted_pickle.Unpickler, pickled_module.RestrictedUnpickler):
        raise TypeError("weights_only=False needs ffkit's restricted unpickler")
    args = {"weights_only": True} if restricted_pickle is None else {"weights_only": False,
                                                                      "pickle_module": restricted_pickle}
    try:
        return torch.load(path, map_location="cpu", **args)
    except CheckpointError:
        raise
    except pickle.UnpicklingError as err:
        text = str(err)
        if "Weights only load failed" not in text:
            raise CheckpointError(f"{path}: truncated or not a PyTorch checkpoint ({text.strip()[:120]})") from None
        lines = [line.strip() for line in text.splitlines()]
        why = next((line for line in lines if "GLOBAL" in line or "Unsupported" in line), "unsupported content")
        raise CheckpointError(
            f"{path}: refused, its pickle needs arbitrary code to load (weights_only=True): {why} "
            "Re-save it as a plain state_dict of tensors if you trust its source") from None
    except (zipfile.BadZipFile, EOFError) as err:
        raise CheckpointError(f"{path}: truncated or not a PyTorch checkpoint ({type(err).__name__}: {err})") from None
    except RuntimeError as err:
        msg = str(err).strip().splitlines()[0].split(". ")[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: truncated or not a PyTorch checkpoint ({msg})") from None
    except Exception as err:  # noqa: BLE001 - any other unpickling failure is a bad file, not a bug here
        raise CheckpointError(f"{path}: truncated or not a PyTorch checkpoint (unpickling failed: {type(err).__name__})") from None


def _read_pickled_module(path: Path, recipe: Recipe) -> object:
    """A ``pickled_module`` file -> its module's state_dict (or the file's own plain state_dict).

    Accepts ``torch.save(model)`` (zip or legacy format), a training dict holding the model under
    ``'model'`` (maybe ``DataParallel``: keys then carry ``module.``), or a plain state_dict. Read
    by :mod:`.pickled_module`: the recipe's ``pickled_classes`` become empty stubs and any other
    global is refused before it runs; a TorchScript archive is refused unread.
    """
    if pickled_module.is_torchscript(path):
        raise CheckpointError(f"{path}: a TorchScript archive, not a torch.save of a {recipe.name} module")
    module = pickled_module.restricted_pickle_module(recipe.pickled_classes, lambda name: CheckpointError(
        f"{path}: refused, its pickle names the global {name}, which is not a {recipe.name} class, "
        "a container or a tensor (nothing from the file was run)"))
    with warnings.catch_warnings():  # the legacy loader cannot read a stub's source to compare: expected
        warnings.filterwarnings("ignore", "Couldn't retrieve source code", UserWarning)
        obj = _torch_load(path, restricted_pickle=module)
    if isinstance(obj, Mapping) and pickled_module.is_module(obj.get("model")):
        obj = obj["model"]
    return pickled_module.module_state_dict(obj) if pickled_module.is_module(obj) else obj


def read_state_dict(path: str | Path, recipe: Recipe) -> dict[str, torch.Tensor]:
    """Read a published checkpoint and return the module's own state_dict.

    Reads it as the recipe's ``checkpoint_format`` says (a ``pickled_module`` through
    :func:`_read_pickled_module`; a TorchScript archive, where the recipe's ``torchscript_archives``
    allows it, through :mod:`.torchscript_archive`; an ncnn ``.param``/``.bin`` pair, given either
    file, through :mod:`.ncnn` and the family's ``ncnn`` module, its keys already the published
    ones), unwraps the recipe's wrapper keys (e.g. ``params_ema`` then ``params``) and a
    ``{'state_dict': ...}`` wrapper, and strips the recipe's optional key prefix (``module.`` from
    DataParallel) when every key carries it.
    """
    path = Path(path)
    if ncnn.is_ncnn(path):    # a .param/.bin pair: the recipe family's ncnn module maps it to keys
        return {k: torch.from_numpy(v.copy()) for k, v in ncnn.read_state_dict(path, recipe).items()}
    if recipe.torchscript_archives and pickled_module.is_torchscript(path):   # read, never run
        check_archive_sizes(path)
        obj = torchscript_archive.read_state_dict(path, recipe.name)
    else:
        obj = _read_pickled_module(path, recipe) if recipe.checkpoint_format == "pickled_module" else _torch_load(path)
    if isinstance(obj, Mapping):
        for wrapper in (*recipe.wrappers, "state_dict"):
            if wrapper in obj and isinstance(obj[wrapper], Mapping):
                obj = obj[wrapper]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state_dict of tensors")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: entry {bad[0]!r} is a {type(obj[bad[0]]).__name__}, not a tensor; "
                              f"expected a state_dict (wrappers tried: {', '.join((*recipe.wrappers, 'state_dict'))})")
    prefix = recipe.key_prefix or "module."
    if all(isinstance(k, str) and k.startswith(prefix) for k in obj):
        obj = {k[len(prefix):]: v for k, v in obj.items()}
    if recipe.state_dict_adapter:
        module_name, func_name = recipe.state_dict_adapter.split(":")
        obj = getattr(importlib.import_module(module_name), func_name)(dict(obj))
    return dict(obj)


def load_into(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], path: str | Path, recipe: Recipe) -> None:
    """Strictly load ``state_dict`` into ``model``; on mismatch name the first keys and shapes."""
    expected = model.state_dict()
    # BatchNorm's step counter is training state, unused in eval(): files saved without it load.
    state_dict = {**{k: torch.zeros_like(v) for k, v in expected.items()
                     if k.endswith(".num_batches_tracked") and k not in state_dict}, **state_dict}
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
              for k, v in expected.items() if k in state_dict and state_dict[k].shape != v.shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (first: {', '.join(missing[:SHOW])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (first: {', '.join(unexpected[:SHOW])})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches (first: {'; '.join(shapes[:SHOW])}, file vs {recipe.name})")
        raise CheckpointError(f"{path}: not a {recipe.name} checkpoint: " + "; ".join(parts))
    converted = {k: state_dict[k].to(v.dtype) for k, v in expected.items()}
    bad = [(k, int((~torch.isfinite(t)).sum())) for k, t in converted.items()
           if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        first, count = bad[0]
        raise CheckpointError(f"{path}: {len(bad)} tensors hold NaN or Inf values (first: {first}, {count} values); "
                              "the checkpoint is damaged or was saved from a diverged run")
    model.load_state_dict(converted, strict=True)
    model.eval()


def load_checkpoint(recipe: Recipe, path: str | Path, **build_options) -> torch.nn.Module:
    """Build the recipe's architecture and load the published checkpoint at ``path`` into it."""
    model = recipe.build_model(**build_options)
    load_into(model, read_state_dict(path, recipe), path, recipe)
    return model
