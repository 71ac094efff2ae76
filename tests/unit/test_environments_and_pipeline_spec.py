"""The spec's [environments], secret references and [pipeline]: what validates, what the
loader refuses (located, in words), and the effective spec an environment sees."""

from __future__ import annotations

import pytest

from corral.errors import SpecError
from corral.spec.environments import effective_spec
from corral.spec.load import parse_spec
from corral.spec.model import SecretRef

BASE = """\
[project]
name = "shop"
[images.web]
base = "scratch"
[services.web]
image = "web"
replicas = 3
env = { A = "1", B = "2", DB = { secret = "db_password" } }
files = { "/run/secrets/db" = { secret = "db_password" } }
router = { listen = "127.0.0.1:8080" }
"""


def spec_with(extra: str) -> str:
    return BASE + extra


def problems(text: str) -> str:
    with pytest.raises(SpecError) as caught:
        parse_spec(text)
    return "\n".join([caught.value.message, *caught.value.problems])


def test_an_environment_overlays_replicas_env_listen_and_nothing_else() -> None:
    spec = parse_spec(spec_with("""
[environments.staging]
default = true
[environments.staging.services.web]
replicas = 1
env = { B = "staging" }
listen = "127.0.0.1:8081"
strategy = "blue-green"
[environments.prod]
"""))
    staging = effective_spec(spec, "staging").services["web"]
    assert (staging.replicas, staging.strategy, staging.router and staging.router.listen) == (
        1, "blue-green", "127.0.0.1:8081")
    assert staging.env == {"A": "1", "B": "staging", "DB": SecretRef(secret="db_password")}
    prod = effective_spec(spec, "prod").services["web"]
    assert prod == spec.services["web"]  # no overlay: the service as written


SIZED = 'resources = { memory = "256M", memory_max = "384M", cpus = 1, pids = 128 }\n'
REGISTRY = '[drivers.swarm]\nregistry = "127.0.0.1:5000/corral"\n'
MIB = 1 << 20


@pytest.mark.parametrize(("service", "overlay", "driver", "resources"), [
    ("", "", "process", None),
    (SIZED, "", "process", (256 * MIB, 384 * MIB, 1.0, 128)),
    ("", 'driver = "container"\n', "container", None),
    ('driver = "container"\n', 'driver = "process"\n', "process", None),
    ("", 'resources = { memory = "64M" }\n', "process", (64 * MIB, None, None, None)),
    # the whole table is replaced, never merged key by key
    (SIZED, 'resources = { cpus = 0.5 }\n', "process", (None, None, 0.5, None)),
    (SIZED, 'driver = "container"\nreplicas = 2\n', "container",
     (256 * MIB, 384 * MIB, 1.0, 128)),
    (SIZED, 'driver = "swarm"\nresources = { pids = 64 }\n', "swarm", (None, None, None, 64)),
])
def test_an_environment_replaces_driver_and_resources(
        service: str, overlay: str, driver: str,
        resources: tuple[int | None, int | None, float | None, int | None] | None) -> None:
    text = BASE + service + "[environments.staging]\n[environments.staging.services.web]\n" \
        'listen = "127.0.0.1:8081"\n' + overlay + "[environments.prod]\n" + REGISTRY
    spec = parse_spec(text)
    staging = effective_spec(spec, "staging").services["web"]
    got = staging.resources
    assert staging.driver == driver
    assert (got and (got.memory, got.memory_max, got.cpus, got.pids)) == resources
    assert effective_spec(spec, "prod").services["web"] == spec.services["web"]


API = """[services.api]
image = "web"
router = { listen = "127.0.0.1:8090" }
"""


@pytest.mark.parametrize(("extra", "expected"), [
    (API + '[environments.a]\n[environments.a.services.web]\ndriver = "container"\n'
     'listen = "127.0.0.1:9"\n[environments.a.services.api]\nlisten = "127.0.0.1:10"\n',
     "environments.a: every service of a project runs on the same driver"),
    ('[environments.a]\n[environments.a.services.web]\ndriver = "swarm"\n',
     'environments.a: driver = "swarm" needs [drivers.swarm] registry'),
    ('[environments.a]\n[environments.a.services.web]\ndriver = "vm"\n',
     "environments.a.services.web.driver: must be one of"),
    ('[environments.a]\n[environments.a.services.web]\n'
     'resources = { memory = "64M", memory_max = "32M" }\n', "must not be below memory"),
    ('[environments.a]\n[environments.a.services.web]\nresources = { cpu = 1 }\n',
     "unknown key"),
])
def test_driver_and_resources_overlays_the_loader_refuses_say_why(
        extra: str, expected: str) -> None:
    assert expected in problems(spec_with(extra))


@pytest.mark.parametrize(("extra", "expected"), [
    ('[environments.a]\ndefault = true\n[environments.b]\ndefault = true\n'
     '[environments.b.services.web]\nlisten = "127.0.0.1:9"\n',
     "only one environment can be the default"),
    ('[environments.a]\n[environments.a.services.api]\nreplicas = 1\n',
     "environments.a.services.api: no such service"),
    ('[environments.a]\nrequire_passed = ["qa"]\n', "'qa' is not another environment"),
    ('[environments.a]\n[environments.b]\n', "b/web and a/web would both listen on "
     "127.0.0.1:8080"),
    ('[environments.a]\n[environments.a.services.web]\nimage = "x"\n', "unknown key"),
])
def test_environments_the_loader_refuses_say_why(extra: str, expected: str) -> None:
    assert expected in problems(spec_with(extra))


def test_a_secret_file_must_be_an_absolute_file_path() -> None:
    text = BASE.replace('"/run/secrets/db"', '"run/secrets/"')
    assert "must be an absolute file path" in problems(text)


PIPELINE = """
[environments.staging]
default = true
[pipeline]
source = "../origin.git"
[[pipeline.stages]]
kind = "build"
"""


@pytest.mark.parametrize(("stage", "expected"), [
    ('kind = "test"\n', "a test stage needs command"),
    ('kind = "deploy"\n', 'a deploy stage needs env = "NAME"'),
    ('kind = "build"\nenv = "staging"\n', "a build stage does not take env"),
    ('kind = "promote"\nenv = "staging"\n', 'a promote stage needs from = "NAME"'),
    ('kind = "deploy"\nenv = "prod"\n', "no environment 'prod' (known: staging)"),
    ('kind = "smoke"\nenv = "staging"\nservice = "api"\n', "no service 'api'"),
])
def test_pipeline_stages_the_loader_refuses_say_why(stage: str, expected: str) -> None:
    assert expected in problems(spec_with(PIPELINE + "[[pipeline.stages]]\n" + stage))


def test_a_pipeline_with_every_stage_kind_validates() -> None:
    spec = parse_spec(spec_with(PIPELINE + """
[[pipeline.stages]]
kind = "test"
command = ["true"]
[[pipeline.stages]]
kind = "deploy"
env = "staging"
[[pipeline.stages]]
kind = "smoke"
env = "staging"
expect_body = "ok"
[[pipeline.stages]]
kind = "promote"
from = "staging"
env = "staging"
approve = true
"""))
    assert spec.pipeline is not None
    assert [s.kind for s in spec.pipeline.stages] == ["build", "test", "deploy", "smoke",
                                                      "promote"]
