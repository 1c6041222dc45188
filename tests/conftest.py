from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import Processes, processes_fixture


@pytest.fixture
def procs() -> Iterator[Processes]:
    """Child processes of this test; all are killed (process group) at teardown, pass or fail."""
    yield from processes_fixture()
