"""The last lines of an instance, as a failure message shows them (delivery/last_lines.py)."""

from __future__ import annotations

from pathlib import Path

from corral.engine.delivery.last_lines import TAIL_BYTES, file_tail, last_lines, with_last_lines
from corral.ports.records import Instance, InstanceState


def _instance(instance_id: str = "web-v2-ab12cd") -> Instance:
    return Instance(instance_id, "web", 2, "sha256:0", "127.0.0.1:1", InstanceState.FAILED, 0.0)


def _files(folder: Path, stdout: str, stderr: str) -> tuple[Path, Path]:
    (folder / "stdout.log").write_text(stdout)
    (folder / "stderr.log").write_text(stderr)
    return folder / "stdout.log", folder / "stderr.log"


def test_stderr_gets_the_larger_share_and_comes_last(tmp_path: Path) -> None:
    paths = _files(tmp_path, "".join(f"out {i}\n" for i in range(20)),
                   "".join(f"err {i}\n" for i in range(7)))
    got = last_lines(paths, 10)
    assert got == [("stdout", f"out {i}") for i in (17, 18, 19)] + [
        ("stderr", f"err {i}") for i in range(7)]


def test_only_the_end_of_a_huge_file_is_read_and_its_cut_first_line_dropped(
        tmp_path: Path) -> None:
    line = "x" * 999 + "\n"
    (tmp_path / "big.log").write_text(line * (3 * TAIL_BYTES // len(line)) + "the end")
    assert file_tail(tmp_path / "big.log", 2) == ["x" * 999, "the end"]
    assert all(len(text) == 999 for text in file_tail(tmp_path / "big.log", 100)[:-1])


def test_missing_files_and_blank_lines_give_nothing(tmp_path: Path) -> None:
    assert file_tail(tmp_path / "absent.log", 10) == []
    assert last_lines(_files(tmp_path, "\n\n", "  \n"), 10) == []


def test_a_reason_naming_an_instance_gets_its_lines_and_others_stay_as_they_are(
        tmp_path: Path) -> None:
    paths = _files(tmp_path, "", "ImportError: flask\n")
    named = with_last_lines("instance web-v2-ab12cd failed: exited with code 1",
                            [_instance("web-v2-000000"), _instance()], lambda _: paths)
    assert named == ("instance web-v2-ab12cd failed: exited with code 1\n"
                     "  last lines (`corral logs web --instance web-v2-ab12cd`):\n"
                     "    stderr  ImportError: flask")
    canary = "analysis 10%: fail: error rate 5.00% > 1.00%"
    assert with_last_lines(canary, [_instance()], lambda _: paths) == canary
    assert with_last_lines("instance web-v2-ab12cd failed", [_instance()], None) == \
        "instance web-v2-ab12cd failed"
