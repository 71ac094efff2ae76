"""corral's Dockerfile parser beyond BuildKit's corpus: directives, heredocs and errors that
the corpus does not exercise, checked against BuildKit's documented behaviour."""

from __future__ import annotations

import pytest

from corral.images.build.dockerfile_parser import ParseError, go_quote, parse_dockerfile


def test_directives_are_read_only_before_the_first_other_line() -> None:
    parsed = parse_dockerfile("# syntax=a/b:1\n# check=skip=all\n# comment\n# escape=`\n"
                              "FROM scratch\n")
    assert parsed.directives == {"syntax": "a/b:1", "check": "skip=all"}
    assert parsed.escape == "\\"


def test_a_repeated_directive_is_an_error_on_its_line() -> None:
    with pytest.raises(ParseError) as error:
        parse_dockerfile("# escape=`\n# escape=\\\nFROM scratch\n")
    assert (error.value.line, error.value.message) == (
        2, "only one escape parser directive can be used")


def test_several_heredocs_on_one_line_are_read_in_order() -> None:
    parsed = parse_dockerfile("FROM scratch\nRUN cat <<A 3<<\"B\" && true\none\nA\ntwo $X\nB\n"
                              "CMD x\n")
    run = parsed.nodes[1]
    assert [(h.name, h.content, h.fd, h.expand) for h in run.heredocs] == [
        ("A", "one\n", 0, True), ("B", "two $X\n", 3, False)]
    assert [(n.name, n.line, n.end_line) for n in parsed.nodes] == [
        ("FROM", 1, 1), ("RUN", 2, 6), ("CMD", 7, 7)]


def test_json_form_and_onbuild_lines_carry_no_heredoc() -> None:
    parsed = parse_dockerfile('FROM scratch\nRUN ["cat", "<<EOF"]\nONBUILD RUN <<EOF\nx\nEOF\n')
    assert parsed.nodes[1].heredocs == ()
    assert parsed.nodes[2].heredocs[0].content == "x\n"
    assert parsed.nodes[2].dump() == 'onbuild (run "<<EOF")'


def test_a_file_without_instructions_is_an_error() -> None:
    with pytest.raises(ParseError, match="file with no instructions"):
        parse_dockerfile("# just a comment\n\n")


@pytest.mark.parametrize(("text", "quoted"), [
    ("plain", '"plain"'), ('a"b\\c', '"a\\"b\\\\c"'), ("\x00\t\n", '"\\x00\\t\\n"'),
    ("\u2603", '"\u2603"'), ("\u0085", '"\\u0085"'),
])
def test_values_are_quoted_as_go_quotes_them(text: str, quoted: str) -> None:
    assert go_quote(text) == quoted
