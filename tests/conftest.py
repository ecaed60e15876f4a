import os

import pytest

os.environ.setdefault("LTKD_PROGRESS", "0")

SHARED_CIFAR = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "cifar10-jpeg")


@pytest.fixture(scope="session")
def digits():
    from ltkd.data import load

    return load("digits")
