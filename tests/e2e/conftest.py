import pytest

from tests.e2e.project_copy import copy_project
from tests.e2e.smoke_chain import train_smoke_chain


@pytest.fixture(scope="session")
def smoke_project(tmp_path_factory):
    """A project copy with the smoke chain trained once for every e2e module that reads it."""
    return train_smoke_chain(copy_project(tmp_path_factory.mktemp("smoke_chain")))
