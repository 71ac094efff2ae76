"""The controller's HTTP API (server) and the client the CLI uses. Edges: no decisions."""
