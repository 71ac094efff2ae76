"""gc keeps what every environment's releases need: it reads each environment's store
where that workspace keeps its state, a pipeline checkout's state root too."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.engine.images.catalog import _every_environments_store
from corral.engine.workspace import Workspace
from corral.errors import CorralError

SPEC = """\
[project]
name = "shop"
[images.web]
base = "scratch"
[services.web]
image = "web"
router = { listen = "127.0.0.1:8080" }
[environments.staging]
default = true
[environments.prod]
services.web.listen = "127.0.0.1:8081"
"""


def test_gc_reads_the_other_environments_stores_under_the_same_state_root(
        tmp_path: Path) -> None:
    spec = tmp_path / "corral.toml"
    spec.write_text(SPEC)
    root = tmp_path / "checkout-state"
    staging = Workspace.open(spec, "staging", root)
    prod = Workspace.open(spec, "prod", root)
    prod.store.list_releases("web")  # prod was used: its state.db exists under `root`
    assert not (tmp_path / ".corral").exists()  # nothing beside the spec

    stores = _every_environments_store(staging)

    assert len(stores) == 1 and stores[0] is not None
    assert (prod.state_dir / "state.db").exists()


def test_a_configured_store_is_refused_for_a_spec_with_environments(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One configured database would mix the environments' states (or, for gc and the deploy
    gate, look never used): refused before anything is read or written, without the URL."""
    spec = tmp_path / "corral.toml"
    spec.write_text(SPEC)
    monkeypatch.setenv("CORRAL_STORE", "postgresql://corral:s3cret@db.internal/corral")
    with pytest.raises(CorralError) as refused:
        Workspace.open(spec, "prod").store  # noqa: B018 - the property is what is refused
    assert "environment 'prod'" in refused.value.message
    assert "(prod, staging)" in refused.value.message
    assert "s3cret" not in str(refused.value)
    assert not (tmp_path / ".corral" / "env" / "prod" / "state.db").exists()
