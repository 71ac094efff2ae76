"""The runtime side of images: image roots that instances run from, and their guard.

Safe layer extraction (unpack), read-only roots composed from a per-layer cache (compose),
file lists and verification of roots (verify), watching them (watch), and what answers drift:
quarantine of a drifted root, repair of the layer cache, fresh roots (guard, repair,
quarantine). It reads the OCI layout (images/oci); it never builds images.
"""
