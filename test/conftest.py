"""Session-wide fixtures: the CI run of the embedded mini recipe is built once and shared by the recipe-level
tests (test_recipe_mini.py, test_recognize.py, the Slurm / DDP / ms-swift scale-out tests), so the suite pays for
stages 0-9 one time; and the test markers."""

import os
from pathlib import Path

import pytest

from mini_recipe import build_mini_recipe


def pytest_configure(config):
    config.addinivalue_line("markers", "slurm: runs jobs through a real single-node Slurm cluster "
                            "(tools/slurm_cluster.sh); skipped when Slurm/munge are not installed")
    config.addinivalue_line("markers", "distributed: starts several training processes (torchrun, gloo on CPU)")
    config.addinivalue_line("markers", "faults: runs the CI mini recipe again under faults (kill -9 inside stages, "
                            "a corrupted corpus); about one recipe run per test")


@pytest.fixture(scope="session")
def recipe(tmp_path_factory):
    """egs/mini_cnvsrc/vsr1 after ``run.sh --stage 0 --stop-stage 9`` in the CI configuration
    (mini_recipe.CI_OPTS), run once a session. Read it, or re-run its stages with the same options (they must
    reproduce their outputs); change it only in a ``mini_recipe.copy_recipe`` copy."""
    reuse = os.environ.get("VALLR_PIN_TEST_RECIPE")  # a finished CI run (developers iterating on one test)
    if reuse:
        return Path(reuse)
    return build_mini_recipe(tmp_path_factory.mktemp("egs_copy"))


@pytest.fixture(scope="session")
def mini_recipe(recipe):
    """The same session run under the name test_recognize.py uses."""
    return recipe


@pytest.fixture(scope="session")
def tiny_llm(tmp_path_factory):
    """The random-init tiny Qwen3 of llm_testdata (its tokenizer knows llm_testdata.SENTS), built once a session;
    read-only: a test that changes a model copies it first."""
    pytest.importorskip("transformers")
    from llm_testdata import build_tiny_llm

    return build_tiny_llm(tmp_path_factory.mktemp("tiny_llm"))
