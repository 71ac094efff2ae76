"""Observe: logs (collecting and reading), metrics, the ledger, DORA, one instance's report,
and the controller's telemetry loop that wires them."""
