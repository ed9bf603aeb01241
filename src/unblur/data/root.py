"""Where the data live: the photos, benchmarks and synthesised sets that training configs and scripts read.

They stay outside the repository (never committed). The data root is, first found:
``data.root`` of a training config, the environment variable ``UNBLUR_DATA``, or the folder ``shared``
next to the repository (``<repository>/../shared``, whatever the current folder). It holds
``photos/train`` and ``photos/val`` (sharp photos) and ``bench/val_uniform`` (the public benchmark).

Pairs synthesised once from those photos (``unblur cache``, a config's ``data.cache``) are the exception:
a relative ``data.cache`` is read below the repository's root folder (its gitignored ``.data/``), not below
the data root.
"""

from __future__ import annotations

import os
from pathlib import Path

#: the repository's root folder (src/unblur/data/root.py -> three levels up), for a source checkout
REPOSITORY = Path(__file__).resolve().parents[3]
ENV = "UNBLUR_DATA"


def data_root(setting: str | Path | None = None) -> Path:
    """``setting`` (a config's ``data.root``) if given, else ``$UNBLUR_DATA``, else ``<repository>/../shared``."""
    if setting:
        return Path(setting).expanduser()
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    return REPOSITORY.parent / "shared"


def data_path(path: str | Path | None, root: str | Path | None = None) -> Path | None:
    """``path`` as given when absolute, else below the data root (``root``: a config's ``data.root``);
    None and "" (no such data) stay None."""
    return _below(path, data_root(root))


def repository_path(path: str | Path | None) -> Path | None:
    """``path`` as given when absolute, else below the repository's root folder, whatever the current folder
    (a config's ``data.cache``, e.g. ``.data/cache-real-world``); None and "" stay None."""
    return _below(path, REPOSITORY)


def _below(path: str | Path | None, base: Path) -> Path | None:
    if path is None or str(path) == "":
        return None
    path = Path(path).expanduser()
    return path if path.is_absolute() else base / path
