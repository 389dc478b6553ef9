"""docs/configuration.md against the code: every environment variable that config.py (and
gunicorn's config file, when there is one) reads is on the page with the default the code
uses, and every variable on the page is read somewhere in the project."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from config import PROJECT_ROOT

PAGE = PROJECT_ROOT / "docs" / "configuration.md"
# The files whose environment variables the page must list in full.
SETTINGS_FILES = [PROJECT_ROOT / "config.py", PROJECT_ROOT / "gunicorn.conf.py"]
# Where the page's other variables may be read.
OTHER_READERS = ["Procfile", "run.py", "tests", "bench", "workers", "jobboard"]
READERS = {"env_int", "env_float", "env_bool", "os.environ.get", "os.getenv", "environ.get"}
MISSING = object()


def variables_read(path: Path) -> dict[str, object]:
    """Each environment variable `path` reads, with the default its code gives (MISSING
    when the call has none, or it is not a constant such as a development secret)."""
    found: dict[str, object] = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if not (isinstance(node, ast.Call) and ast.unparse(node.func) in READERS):
            continue
        if not node.args or not isinstance(node.args[0], ast.Constant):
            continue
        name = node.args[0].value
        if name in found:  # the base class's default, not a subclass's (TestConfig's)
            continue
        if ast.unparse(node.func) == "env_bool" and len(node.args) == 1:
            found[name] = False
        elif len(node.args) > 1:
            found[name] = constant(node.args[1])
        else:
            found[name] = MISSING
    return found


def constant(node: ast.expr) -> object:
    try:
        return eval(
            compile(ast.Expression(node), "<default>", "eval"), {"__builtins__": {"str": str}}
        )
    except NameError:
        return MISSING


def documented() -> dict[str, str]:
    """Variable -> its default cell, from every table of the page."""
    rows: dict[str, str] = {}
    for line in PAGE.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and re.fullmatch(r"`[A-Z][A-Z0-9_]*`", cells[0]):
            rows[cells[0].strip("`")] = cells[1]
    return rows


def same_default(cell: str, default: object) -> bool:
    shown = cell.split(" (")[0].strip("`")
    if isinstance(default, bool):
        return shown == str(default).lower()
    try:
        return float(shown) == float(default)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return shown == str(default)


def test_every_setting_is_documented_with_its_default():
    page = documented()
    for path in SETTINGS_FILES:
        if not path.exists():
            continue
        for name, default in variables_read(path).items():
            assert name in page, f"{name} ({path.name}) is missing from docs/configuration.md"
            if default is not MISSING:
                assert same_default(page[name], default), (
                    f"{name}: docs/configuration.md says {page[name]}, {path.name} {default!r}"
                )


def test_every_documented_variable_is_read_by_the_project():
    in_settings = set()
    for path in SETTINGS_FILES:
        if path.exists():
            in_settings |= set(variables_read(path))
    texts = []
    for reader in OTHER_READERS:
        path = PROJECT_ROOT / reader
        files = [path] if path.is_file() else sorted(path.rglob("*.py"))
        texts.extend(file.read_text() for file in files)
    everything = "\n".join(texts)
    for name in documented():
        if name in in_settings:
            continue
        assert re.search(rf"[\"'$]\{{?{name}\b", everything), (
            f"docs/configuration.md documents {name}, which nothing in the project reads"
        )


def test_the_check_sees_a_missing_variable(tmp_path):
    settings = tmp_path / "settings.py"
    settings.write_text('A = env_int("SOME_LIMIT", 5)\nB = os.environ.get("SOME_NAME", "x")\n')
    assert variables_read(settings) == {"SOME_LIMIT": 5, "SOME_NAME": "x"}
    assert same_default("262144 (256 KiB)", 262144) and not same_default("`INFO`", "DEBUG")
