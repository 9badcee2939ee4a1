"""The package says it is typed (PEP 561): ``py.typed`` beside the code of every package a
user imports, named by the package data, so ``mypy --strict`` in a user's project reads
the annotations instead of calling the package untyped."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("package", ["app", "tasks", "models"])
def test_each_top_level_package_has_the_py_typed_marker(package: str) -> None:
    module = importlib.import_module(package)
    assert module.__file__ is not None
    assert (Path(module.__file__).parent / "py.typed").is_file()


def test_the_package_data_ships_the_marker_of_every_found_package() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "py.typed" in config["package-data"]["*"]
    assert {"app*", "tasks*", "models*"} <= set(config["packages"]["find"]["include"])
