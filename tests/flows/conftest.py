import pytest
from prefect.testing.utilities import prefect_test_harness


@pytest.fixture(scope="package", autouse=True)
def prefect_server():
    """One temporary Prefect server (SQLite) for the flow tests; package-scoped, so it is gone before
    tests/service starts its own real server and points Prefect's client there."""
    with prefect_test_harness(server_startup_timeout=120):
        yield
