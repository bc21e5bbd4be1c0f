"""The scale-out tests need PostgreSQL's server binaries. Where they are missing (a newcomer's
machine) the tests are skipped with the reason and the install command; CI
(`BMA_QUANT_REQUIRE_POSTGRES=1`, set by .ci/run, which installs the package) fails instead, so
they can never be skipped there unnoticed."""

import os

import pytest

from tests.scale_out.postgres import MISSING, find_server_bindir

REQUIRE = "BMA_QUANT_REQUIRE_POSTGRES"


@pytest.fixture(autouse=True, scope="session")
def _postgres_binaries():
    if find_server_bindir() is None:
        if os.environ.get(REQUIRE, "").strip() not in ("", "0"):
            pytest.fail(f"{MISSING} ({REQUIRE} is set)", pytrace=False)
        pytest.skip(MISSING)
