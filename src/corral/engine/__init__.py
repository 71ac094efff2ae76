"""The imperative shell: runs decisions against ports, holds locks, writes the ledger.

Laid out by area, with cli/'s and api/'s nouns (docs/adr/0013): `controller.py` composes
`operate/` (health, reconcile, drift, plan, status, chaos), which uses `delivery/` (deploy,
rollback, instances, traffic, locks), which uses `images/` (build, trust, gc, push/pull),
which records in `observe/` (logs, metrics, ledger, DORA); all stand on `fleet.py`,
`loop.py`, `workspace.py` and `adapters.py`. A lower area never imports a higher one.
"""
