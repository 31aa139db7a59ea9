"""The tune cache: candidate files, timings and judgements, keyed by content.

Everything lives under ``<models>/.ffkit-tune/``: ``candidates/<recipe>.<key>.onnx`` (a stage's
output, key = sha256 of the input file's sha256, the stage and its recorded parameters, the
calibration set's digest), ``records.json`` (what each key holds) and ``judged/<key>.json`` (the
validate rows of one set on one source, targets and options: budget-free, so a run that
changes only the budget re-judges nothing). ``builds`` and ``hits`` count what a run did.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from ffkit.recipes.atomic import atomic_path
from ffkit.recipes.paths import sha256_of

__all__ = ["TuneCache", "content_key", "CACHE_DIR"]

CACHE_DIR = ".ffkit-tune"
VERSION = 1


def content_key(*parts: Any) -> str:
    """sha256 of the JSON of ``parts`` (sorted keys): the cache key of one thing."""
    text = json.dumps([VERSION, *parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=1, default=str))


@dataclass
class TuneCache:
    """The cache of one models folder (see the module docstring)."""

    root: Path
    builds: int = 0
    hits: int = 0
    judged: int = 0
    judged_hits: int = 0
    _sha: dict = field(default_factory=dict)

    @classmethod
    def of(cls, models: Path) -> "TuneCache":
        root = Path(models) / CACHE_DIR
        (root / "candidates").mkdir(parents=True, exist_ok=True)
        (root / "judged").mkdir(parents=True, exist_ok=True)
        return cls(root)

    def sha(self, path: Path) -> str:
        """sha256 of a file, memoised by (path, size, mtime)."""
        st = Path(path).stat()
        key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
        if key not in self._sha:
            self._sha[key] = sha256_of(path)
        return self._sha[key]

    def _records(self) -> dict:
        path = self.root / "records.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return {}

    def candidate(self, recipe: str, key: str, build: Callable[[Path], dict]) -> tuple[Path, dict]:
        """The file of ``key`` (built by ``build(out_path) -> record`` when absent) and its record."""
        path = self.root / "candidates" / f"{recipe}.{key[:16]}.onnx"
        records = self._records()
        if path.is_file() and key in records:
            self.hits += 1
            return path, records[key]
        record = build(path)
        self.builds += 1
        records = self._records()
        records[key] = record
        _write_json(self.root / "records.json", records)
        return path, record

    def load_judged(self, key: str) -> Optional[dict]:
        path = self.root / "judged" / f"{key[:32]}.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        self.judged_hits += 1
        return data

    def save_judged(self, key: str, data: dict) -> None:
        self.judged += 1
        _write_json(self.root / "judged" / f"{key[:32]}.json", data)

    def load_value(self, name: str, key: str) -> Any:
        path = self.root / f"{name}.json"
        try:
            return json.loads(path.read_text()).get(key)
        except (OSError, ValueError):
            return None

    def save_value(self, name: str, key: str, value: Any) -> None:
        path = self.root / f"{name}.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = {}
        data[key] = value
        _write_json(path, data)
