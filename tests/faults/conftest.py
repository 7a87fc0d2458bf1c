"""The fault suite's fixtures: the outage suite's endpoints and the apply suite's lab slice."""

from __future__ import annotations

from tests.apply.conftest import empty_dev_namespace, lab  # noqa: F401 (fixtures)
from tests.outages.conftest import lab_up  # noqa: F401 (fixture)
