"""Observation: central logs, metrics, the ledger, DORA metrics (adapters)."""
