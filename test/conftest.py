"""Session-wide fixtures: the CI run of the embedded mini recipe is built once and shared by the recipe-level
tests (test_recipe_mini.py, test_recognize.py), so the suite pays for stages 0-9 one time."""

import os
from pathlib import Path

import pytest

from mini_recipe import build_mini_recipe


@pytest.fixture(scope="session")
def mini_recipe(tmp_path_factory):
    """The recipe directory after ``run.sh --stage 0 --stop-stage 9`` in the CI configuration. Tests may re-run
    stages (they must reproduce their outputs) but must write anything else outside it."""
    reuse = os.environ.get("VALLR_PIN_TEST_RECIPE")  # a finished CI run (developers iterating on one test)
    if reuse:
        return Path(reuse)
    return build_mini_recipe(tmp_path_factory.mktemp("egs_copy"))
