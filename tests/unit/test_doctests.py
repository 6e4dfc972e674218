"""The examples in salara's docstrings run as they read."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import salara

MODULES = sorted(
    info.name for info in pkgutil.walk_packages(salara.__path__, "salara.") if not info.name.endswith(".__main__")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_there_are_examples_to_run() -> None:
    finder = doctest.DocTestFinder()
    examples = sum(len(test.examples) for name in MODULES for test in finder.find(importlib.import_module(name)))
    assert examples >= 5
