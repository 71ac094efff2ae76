"""Operate: keeping what runs as its releases say (health, reconcile, drift), `corral plan`,
status, chaos, and the controller in the background."""
