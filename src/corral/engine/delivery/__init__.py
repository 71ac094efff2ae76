"""Delivery: moving a service from one release to another (deploy, execute the steps, start and stop
instances, traffic and the warm fleet, rollback, resume, the deploy lock, outcomes)."""
