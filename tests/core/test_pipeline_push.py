"""Which push webhooks concern the pipeline's branch, as a table: the watcher's webhook
(api/webhook.py) and the controller's route (api/pipeline_routes.py) both ask it."""

from __future__ import annotations

import pytest

from corral.core.pipeline import is_push_to


@pytest.mark.parametrize(("ref", "branch", "expected"), [
    ("refs/heads/main", "main", True),
    (None, "main", True),
    ("refs/heads/dev", "main", False),
    ("refs/tags/main", "main", False),
    ("main", "main", False),
    ("refs/heads/main/x", "main", False),
    ("refs/heads/release/1.2", "release/1.2", True),
])
def test_a_push_concerns_the_branch_only_by_its_full_ref(ref: str | None, branch: str,
                                                         expected: bool) -> None:
    assert is_push_to(ref, branch) is expected
