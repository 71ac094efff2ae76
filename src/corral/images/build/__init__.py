"""The builder half of images: an ImageSpec or a Dockerfile made into a reproducible OCI image.

Plans (spec keys or Dockerfile), bases (scratch, debootstrap, a layout or a registry image),
build context and `.dockerignore`, `run` steps in a sandbox, reproducible layers and tar
streams, image config and healthcheck, provenance labels, the SBOM, and the check that two
builds are identical. It writes into the OCI layout (images/oci) and unpacks through
images/roots; it never tags (the store does) and never runs instances.
"""
