"""Session-wide fixtures: the CI-sized mini recipe run (shared by the recipe-level tests) and test markers."""

import pytest

from mini_recipe import make_recipe_copy, run_recipe


def pytest_configure(config):
    config.addinivalue_line("markers", "slurm: runs jobs through a real single-node Slurm cluster "
                            "(tools/slurm_cluster.sh); skipped when Slurm/munge are not installed")
    config.addinivalue_line("markers", "distributed: starts several training processes (torchrun, gloo on CPU)")


@pytest.fixture(scope="session")
def recipe(tmp_path_factory):
    """egs/mini_cnvsrc/vsr1 after stages 0-9 of the CI configuration (mini_recipe.CI_OPTS), run once a session.
    Read it, or re-run its stages with the same options; change it only in a ``copy_recipe`` copy."""
    dst = make_recipe_copy(tmp_path_factory.mktemp("egs_copy"))
    run_recipe(dst, "--stage", "0", "--stop-stage", "9")
    return dst
