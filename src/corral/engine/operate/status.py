"""What runs, for `corral status`: each service as its router serves it (the listen address
the router really has, which a refused change or a rollback may leave apart from the
releases'), and, when no controller runs, the router and the instances the driver still has.

It reads the router, the driver and the store; it changes nothing and decides nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from corral.core.reconcile import exit_reason
from corral.core.weights import traffic_shares
from corral.errors import ControllerError, CorralError, RouterError
from corral.ports.driver import Driver, Measurable
from corral.ports.records import Deployment, DeploymentOutcome, Instance, Observed
from corral.ports.router import Router, RouterProcess
from corral.ports.store import Store

NO_CONTROLLER = "the controller is not running"


def router_view(router: Router) -> dict[str, Any]:
    """{"running", "pid", "listen": {service: address it serves}} as the router says."""
    try:
        listen, running = router.listening(), True
    except RouterError:
        listen, running = {}, False
    pid = router.pid() if isinstance(router, RouterProcess) else None
    return {"running": running, "pid": pid if running else None, "listen": listen}


def service_view(name: str, store: Store, router: Router, served: dict[str, str],
                 instances: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """One service of `status`: `listen` is the address the router serves it on (None when
    it does not), `note` says why that is not what its releases ask, if it is not."""
    listen = served.get(name)
    try:
        backends = router.backends(name) if listen else []
    except RouterError:
        backends = []
    live = store.live_release(name)
    deployments = store.list_deployments(name)[:1]
    last = deployments[0] if deployments else None
    return {
        "name": name, "live_release": live, "listen": listen,
        "note": listen_note(listen, _listen_of(store, name, live), live, last,
                            _listen_of(store, name, last.to_release) if last else None),
        "instances": list(instances),
        "traffic": traffic_shares(backends),
        "backends": [{"address": b.address, "weight": b.weight, "release": b.release,
                      "instance": b.instance} for b in backends],
        "last_deployment": deployment_view(last) if last else None,
    }


def listen_note(served: str | None, wanted: str | None, live: int | None,
                last: Deployment | None, last_wanted: str | None) -> str | None:
    """Why the router's address differs from what the releases ask, or None.

    >>> listen_note("127.0.0.1:8080", "127.0.0.1:8080", 1, None, None) is None
    True
    >>> listen_note(None, "127.0.0.1:8080", 1, None, None)
    'the router does not serve live v1 (127.0.0.1:8080)'
    """
    notes = []
    if wanted and served != wanted:
        notes.append(f"the router does not serve live v{live} ({wanted})" if served is None
                     else f"the router serves {served}, but live v{live} asks for {wanted}")
    if (last is not None and last_wanted and last_wanted not in (served, wanted)
            and last.outcome is not DeploymentOutcome.RUNNING
            and last.outcome is not DeploymentOutcome.SUCCEEDED):
        notes.append(f"v{last.to_release} asked for {last_wanted}: deployment #{last.id} "
                     f"{last.outcome.value}")
    return "; ".join(notes) or None


def instance_view(instance: Instance, driver: Driver | None = None) -> dict[str, Any]:
    """An instance as the store has it, with its use against its limits when `driver` can
    measure it (`usage`: null otherwise)."""
    return {"id": instance.id, "release": f"v{instance.release}", "state": instance.state.value,
            "address": instance.address, "pid": instance.pid, "since": instance.created_at,
            "reason": instance.reason, "usage": usage_view(driver, instance.id)}


def usage_view(driver: Driver | None, instance_id: str) -> dict[str, Any] | None:
    """memory and memory_limit (bytes), cpu_seconds, cpus (limit, cores), pids, pids_limit,
    oom_kills; None when the driver cannot measure instances or has no group for this one."""
    if not isinstance(driver, Measurable):
        return None
    usage = driver.usage(instance_id)
    return asdict(usage) if usage is not None else None


def deployment_view(deployment: Deployment) -> dict[str, Any]:
    return {"id": deployment.id, "strategy": deployment.strategy,
            "from": deployment.from_release, "to": deployment.to_release,
            "outcome": deployment.outcome.value, "started_at": deployment.started_at,
            "ended_at": deployment.ended_at, "reason": deployment.reason}


def status_when_down(spec_file: str | Path, service: str | None,
                     env: str | None = None) -> dict[str, Any]:
    """`status` with no controller answering: what still runs, read without the spec;
    raises ControllerError when nothing does."""
    from corral.engine.workspace import StateFolder, env_state_dir_of

    state_dir = env_state_dir_of(spec_file, env)
    if not is_anything_left(state_dir):
        raise ControllerError(f"{NO_CONTROLLER}, and no router or instance of this project "
                              "runs", hint="start it with `corral up -d`")
    folder = StateFolder(state_dir)
    return status_without_controller(folder.store, folder.router, folder.driver, service)


def is_anything_left(state_dir: Path) -> bool:
    """Did a router or an instance outlive the controller? From files alone (cheap: the
    CLI asks before it loads any adapter)."""
    run = state_dir / "run"
    instances = run / "instances"
    return ((run / "router.pid").exists() or (run / "haproxy.pid").exists()
            or (instances.is_dir() and any(instances.iterdir())))


def status_without_controller(store: Store, router: Router, driver: Driver,
                              service: str | None) -> dict[str, Any]:
    """What still runs with no controller: the router as it serves, the instances the
    driver has (with what the store last knew of them), and a note saying so."""
    router_now = router_view(router)
    known = {i.id: i for i in store.list_instances(live_only=True)}
    observed = [o for o in driver.list() if o.labels.get("corral.service")]
    names = sorted(set(store.services()) | set(router_now["listen"])
                   | {o.labels["corral.service"] for o in observed})
    if service is not None:
        if service not in names:
            raise CorralError(f"service {service!r} has never been deployed",
                              hint=f"deploy it: corral deploy {service}")
        names = [service]
    services = [service_view(name, store, router, router_now["listen"],
                             [_observed_view(o, known.get(o.id), driver) for o in observed
                              if o.labels["corral.service"] == name])
                for name in names]
    running = sum(1 for o in observed if o.running)
    what = (f"the router (pid {router_now['pid']}) keeps serving" if router_now["running"]
            else "the router is not running")
    return {"controller": {"pid": None, "running": False,
                           "note": f"{NO_CONTROLLER}: {what}; {running} instance(s) still "
                                   "run (start it again: corral up -d)"},
            "router": router_now, "services": services}


def _observed_view(observed: Observed, known: Instance | None,
                   driver: Driver) -> dict[str, Any]:
    """An instance as the driver has it; its state is the store's last word while it runs."""
    reason: str | None
    if not observed.running:
        state, reason = "exited", exit_reason(observed)
    elif known is not None:
        state, reason = known.state.value, known.reason
    else:
        state, reason = "running", None
    return {"id": observed.id, "release": f"v{observed.labels.get('corral.release', '?')}",
            "state": state, "address": observed.address, "pid": observed.pid,
            "since": observed.started_at or (known.created_at if known else None),
            "reason": reason, "usage": usage_view(driver, observed.id)}


def _listen_of(store: Store, service: str, version: int | None) -> str | None:
    if version is None:
        return None
    release = store.get_release(service, version)
    if release is None:
        return None
    try:
        spec = release.spec  # parsed here only: the spec model is not for `status` alone
    except (CorralError, ValueError):  # a config this version cannot read: no opinion
        return None
    return spec.router.listen if spec.router else None
