"""SBOM layer scans started early (while a build runs) give what a scan made at the end gives,
and a scan that fails in the background fails in the caller, with no thread traceback."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from corral.images.build.sbom import LayerScans, scan_layer

DIFF_ID = "sha256:" + "2" * 64


def _layer(path: Path) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, text in (("etc/os-release", "ID=debian\n"), ("srv/app.py", "print(1)\n")):
            info = tarfile.TarInfo(name)
            info.size = len(text)
            tar.addfile(info, io.BytesIO(text.encode()))
    return path


def test_a_scan_started_early_is_the_scan_made_at_the_end(tmp_path: Path) -> None:
    blob = _layer(tmp_path / "layer.tar")
    scans = LayerScans(tmp_path / "early")
    scans.start(blob, DIFF_ID)
    early = scans.scan(blob, DIFF_ID)
    assert early == scan_layer(blob, DIFF_ID, tmp_path / "late")
    assert set(early.files) == {"etc/os-release", "srv/app.py"}
    assert (tmp_path / "early" / f"{'2' * 64}.json").is_file()  # cached for the next build


def test_a_scan_that_failed_in_the_background_fails_in_the_caller(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    blob = tmp_path / "layer.tar"
    blob.write_bytes(b"not a tar at all" * 100)
    scans = LayerScans(tmp_path / "cache")
    scans.start(blob, DIFF_ID)
    with pytest.raises(tarfile.ReadError):
        scans.scan(blob, DIFF_ID)
    assert "Traceback" not in capfd.readouterr().err
