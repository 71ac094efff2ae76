"""The OCI side of images: a content-addressed image layout on disk (blobs, index.json tags),
incoming blobs hashed as they land, OCI 1.1 referrers (SBOM, signatures) and ed25519 signing.

It stores and reads images; it never builds, unpacks or talks to a registry. The other
sub-packages of images build on it; it imports none of them.
"""
