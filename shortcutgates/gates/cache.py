"""Data-gate results cached by content: a checkpoint after the first pays for its model gates only.

The data gates (``data_integrity``, ``lrg_leakage``, the probes on ``raw_robust`` ...) depend on the
manifest and the gate settings alone, yet every ``pytest gate_tests --model``, ``shortcutgates gate``
and CI job would measure them again. Their records are kept in one JSON file per *key*:

``key = sha256(format, shortcutgates version, manifest digest, gate settings)``

* the manifest digest (:func:`manifest_digest`) hashes the bytes of every file the gates read: the
  manifest's parquet files, its ``manifest.json`` and every file a pointer row names;
* the gate settings are the whole :class:`~shortcutgates.gates.records.GateConfig` (sampling seed,
  ``max_samples``, ``n_boot``, level, boxes, folds, thresholds, waivers, promoted cases).

Any change of a byte, a setting or the version gives another key, so a stale entry is never read.
Only cases that need no model are stored (a model case changes with every checkpoint), and, beside
them, the model gates' model-independent arrays (``<key>.lensing-<split>.npz``: the lensing split of
the paired split's pairs, :func:`shortcutgates.gates.paired.paired_set`), so a later run on the same
manifest pays only for what its model changes. Entries
live in ``<cache dir>/gates/<key>.json`` (:func:`cache_dir`: ``--gate-cache DIR``, else
``$SHORTCUTGATES_CACHE``, else ``~/.cache/shortcutgates``) and are written to a temporary name
and renamed, so a reader sees a whole entry or none. An entry that cannot be read (truncated, not
JSON, another format, another key) is ignored with a one-line notice and overwritten.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

FORMAT = "shortcutgates.gate-cache/1"
ENV = "SHORTCUTGATES_CACHE"
"""Environment variable naming the cache directory (the entries go into its ``gates/`` folder)."""


def cache_dir(explicit=None) -> Path:
    """Directory of the cache entries: ``explicit``, else ``$SHORTCUTGATES_CACHE``, else
    ``~/.cache/shortcutgates`` (``$XDG_CACHE_HOME`` honoured); entries go into its ``gates/``."""
    if explicit is not None:
        root = Path(explicit)
    elif os.environ.get(ENV):
        root = Path(os.environ[ENV])
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "shortcutgates"
    return root.expanduser() / "gates"


def is_data_case(case) -> bool:
    """A case measured on the data alone (its record is the same for every model)."""
    return "model" not in case.needs


def _source_files(manifest) -> list[Path]:
    """Every file the gates read: manifest parquet files, ``manifest.json``, pointed-to files."""
    from shortcutgates.data.io import list_parquet_files
    from shortcutgates.data.schema import MANIFEST_FILE

    root = Path(manifest.root)
    files = list(list_parquet_files(root))
    if root.is_dir() and (root / MANIFEST_FILE).is_file():
        files.append(root / MANIFEST_FILE)
    frame = manifest.frame
    if "source_path" in frame:
        for value in frame["source_path"].dropna().unique():
            path = Path(str(value)).expanduser()
            if not path.is_absolute() and not path.exists():
                path = (root if root.is_dir() else root.parent) / path
            files.append(path)
    return sorted({p.resolve() if p.exists() else p for p in files}, key=str)


def manifest_digest(manifest) -> str:
    """sha256 over (name, sha256 of the bytes) of every file the gates read, in path order.

    A pointed-to file that does not exist enters by name (the gates report it as a bad row).
    Unit of work: one read of every byte (about 1 GB/s).
    """
    from shortcutgates.data.io import file_sha256

    root = Path(manifest.root).resolve()
    h = hashlib.sha256()
    for path in _source_files(manifest):
        try:
            name = str(path.relative_to(root))
        except ValueError:
            name = str(path)
        digest = file_sha256(path) if path.is_file() else "missing"
        h.update(f"{name}\0{digest}\n".encode())
    return h.hexdigest()


def settings_of(config) -> dict:
    """The gate settings as JSON-ready values (every field of the config)."""
    from dataclasses import asdict

    from shortcutgates.data.io import jsonable

    return jsonable(asdict(config))


def cache_key(manifest, config) -> str:
    """Hex sha256 of the format, the package version, the manifest digest and the gate settings."""
    from shortcutgates import __version__

    text = json.dumps(
        {
            "format": FORMAT,
            "version": __version__,
            "manifest": manifest_digest(manifest),
            "settings": settings_of(config),
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()


class DataGateCache:
    """Records of data cases for one key: read once, added to, written atomically.

    Parameters
    ----------
    directory : path
        The ``gates/`` folder of :func:`cache_dir`.
    key : str
        :func:`cache_key` of the manifest and the settings.
    notify : callable(str)
        Receives the one-line notice about an entry that was ignored.
    """

    def __init__(self, directory, key: str, notify=None):
        self.path = Path(directory) / f"{key}.json"
        self.key = key
        self.notices: list[str] = []
        self._notify = notify
        self.records: dict[str, dict] = self._read()
        self.n_reused = 0
        self._added = False
        self.reuse = True
        """False after :meth:`forget` (``--no-cache``): nothing stored is read, fresh results are written."""

    def forget(self) -> None:
        """``--no-cache``: measure everything again (records and arrays); the fresh results replace the entry."""
        self.records.clear()
        self.reuse = False

    def _read(self) -> dict[str, dict]:
        if not self.path.exists():
            return {}
        try:
            entry = json.loads(self.path.read_text())
            if not isinstance(entry, dict) or entry.get("format") != FORMAT:
                raise ValueError(f"not a {FORMAT} entry")
            if entry.get("key") != self.key:
                raise ValueError("its key does not match its name")
            records = entry.get("records")
            if not isinstance(records, dict) or not all(
                isinstance(r, dict) and r.get("id") == i and "verdict" in r for i, r in records.items()
            ):
                raise ValueError("its records are malformed")
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            self._notice(
                f"shortcutgates: ignoring the corrupt gate cache entry {self.path} ({exc}); recomputing the data gates"
            )
            return {}
        return records

    def _notice(self, line: str) -> None:
        self.notices.append(line)
        if self._notify is not None:
            self._notify(line)

    def get(self, case) -> dict | None:
        """The stored record of a data case, or None (model cases are never stored)."""
        record = self.records.get(case.id) if is_data_case(case) else None
        if record is not None:
            self.n_reused += 1
            return dict(record)
        return None

    def put(self, case, record: dict) -> None:
        """Keep a data case's record (a skipped one is not kept: it measured nothing)."""
        if is_data_case(case) and record.get("verdict") != "skipped" and self.records.get(case.id) != record:
            self.records[case.id] = dict(record)
            self._added = True

    def save(self) -> Path | None:
        """Write the entry if records were added (temporary name, then rename); its path, or None."""
        if not self._added:
            return None
        from shortcutgates.data.io import write_bytes_atomic

        entry = {"format": FORMAT, "key": self.key, "records": self.records}
        self._added = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(self.path, json.dumps(entry, sort_keys=True, allow_nan=False).encode())
        except OSError as exc:  # a read-only cache costs a recompute next time, never the gate run
            self._notice(f"shortcutgates: cannot write the gate cache entry {self.path} ({exc.strerror or exc})")
            return None
        return self.path

    # --- arrays: model-independent work of the model gates (the lensing split of the paired set) -------
    def arrays_path(self, name: str) -> Path:
        """``<key>.<name>.npz`` beside the entry."""
        return self.path.with_name(f"{self.key}.{name}.npz")

    def load_arrays(self, name: str, check) -> dict | None:
        """Stored arrays ``name`` of this key, or None (absent, ``--no-cache``, or corrupt: one-line notice).

        ``check(arrays)`` raises ``ValueError`` when they do not fit the data they stand for (their
        shapes); read with ``allow_pickle=False``.
        """
        import zipfile

        import numpy as np

        path = self.arrays_path(name)
        if not self.reuse or not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as stored:
                if str(stored["format"]) != FORMAT or str(stored["key"]) != self.key:
                    raise ValueError(f"not a {FORMAT} entry of this key")
                arrays = {k: stored[k] for k in stored.files if k not in ("format", "key")}
            check(arrays)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            self._notice(f"shortcutgates: ignoring the corrupt gate cache entry {path} ({exc}); recomputing it")
            return None
        return arrays

    def save_arrays(self, name: str, arrays: dict) -> Path | None:
        """Store arrays ``name`` (temporary name, then rename); its path, or None when it cannot be written."""
        import io

        import numpy as np

        from shortcutgates.data.io import write_bytes_atomic

        path = self.arrays_path(name)
        buffer = io.BytesIO()
        np.savez(buffer, format=np.array(FORMAT), key=np.array(self.key), **arrays)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(path, buffer.getvalue())
        except OSError as exc:
            self._notice(f"shortcutgates: cannot write the gate cache entry {path} ({exc.strerror or exc})")
            return None
        return path


def open_cache(context, directory=None, notify=None) -> DataGateCache:
    """The cache entry of a gate context's manifest and settings."""
    return DataGateCache(cache_dir(directory), cache_key(context.manifest, context.config), notify)
