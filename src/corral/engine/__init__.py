"""The imperative shell: runs plans against ports, holds locks, writes the ledger."""
