"""Installing the test extras never changes a package the main install chose (issue 13, item 5):
the tests must run on the same libraries as ``offbench reproduce`` does."""
from __future__ import annotations

import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_dev_extras_do_not_narrow_a_main_dependency():
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    main = {_name(r): r for r in project["dependencies"]}
    for extra, requirements in project["optional-dependencies"].items():
        for requirement in requirements:
            assert _name(requirement) not in main, (
                f"[{extra}] repeats the main dependency {requirement!r}: a second constraint can make "
                f"`pip install -e '.[{extra}]'` pick another version than the main install did")


def test_installed_pandas_satisfies_rliable_and_the_package():
    import pandas

    assert int(pandas.__version__.split(".")[0]) < 3  # arch<8 (rliable's) does not import under pandas 3
    import rliable  # noqa: F401  (imports, with arch, under this pandas)
