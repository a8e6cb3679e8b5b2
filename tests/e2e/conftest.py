"""e2e fixtures (helpers live in ``cluster_helpers``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cluster_helpers import write_mnist_subset


@pytest.fixture(scope="session")
def mnist_subset(mnist_dir, tmp_path_factory) -> Path:
    """A small real-MNIST IDX directory, written once per session."""
    return write_mnist_subset(mnist_dir, tmp_path_factory.mktemp("mnist_subset"))
