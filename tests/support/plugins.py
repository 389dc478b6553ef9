"""Processor plugins as pip would leave them installed: a module and a `*.dist-info` whose
entry_points.txt declares kinds in the `jobboard.processors` group. The test process
finds them on `sys.path`; a worker process with `PYTHONPATH` set to the folder does too."""

from __future__ import annotations

import importlib
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from workers.processors import load_entry_points, unregister


@dataclass(frozen=True)
class Plugin:
    folder: Path
    module: str
    # entry-point name -> object in the module
    entry_points: dict[str, str]

    @property
    def kinds(self) -> list[str]:
        return list(self.entry_points)


def write_plugin(folder: Path, source: str, entry_points: dict[str, str]) -> Plugin:
    """A distribution of one module with `source` in `folder`. `{suffix}` in `source` and in
    the entry points' names is replaced by a name unique to this plugin, so kinds never
    meet those of another test in the process-wide registry."""
    suffix = uuid.uuid4().hex[:8]
    module = f"jobboard_plugin_{suffix}"
    points = {name.format(suffix=suffix): target for name, target in entry_points.items()}
    (folder / f"{module}.py").write_text(source.replace("{suffix}", suffix))
    dist_info = folder / f"{module}-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 1.0\n"
    )
    lines = "".join(f"{name} = {module}:{target}\n" for name, target in points.items())
    (dist_info / "entry_points.txt").write_text(f"[jobboard.processors]\n{lines}")
    return Plugin(folder, module, points)


@contextmanager
def installed(plugin: Plugin) -> Iterator[Plugin]:
    """`plugin` importable and its kinds registered in this process, until the end."""
    sys.path.insert(0, str(plugin.folder))
    importlib.invalidate_caches()
    try:
        load_entry_points(force=True)
        yield plugin
    finally:
        sys.path.remove(str(plugin.folder))
        sys.modules.pop(plugin.module, None)
        for kind in plugin.kinds:
            unregister(kind)
        importlib.invalidate_caches()
