"""Images in the engine: building for a spec and its provenance, signing keys and trust,
the image list and gc, reproducibility checks, push and pull."""
