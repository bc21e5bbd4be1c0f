"""The scale-out tests need PostgreSQL's server binaries. `make test` (and `.ci/run`) installs the
Debian package where they are missing and it can (as root with apt-get); where they are still
missing the tests fail with the install command rather than skip, so they never pass unrun."""

import pytest

from tests.scale_out.postgres import MISSING, find_server_bindir


@pytest.fixture(autouse=True, scope="session")
def _postgres_binaries():
    if find_server_bindir() is None:
        pytest.fail(MISSING, pytrace=False)
