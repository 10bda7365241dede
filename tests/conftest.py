"""Shared fixtures: ``smoke_run``, the six notebooks executed once per session (see smoke_notebooks.py), and
``one_thread`` for the tests that train tiny models."""
import pytest
import torch

from smoke_notebooks import smoke_run  # noqa: F401  (a session fixture)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread, and least disturbed when another process holds a core."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
