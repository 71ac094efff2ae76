"""Docker's variable expansion inside text whose quotes are content (JSON-form arguments,
heredoc bodies): $VAR, ${VAR}, ${VAR:-default} and ${VAR:+alternative}. Word-level reading
(quotes, escapes) is dockerfile_words.py's; the parser is dockerfile_parser.py.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_VAR = re.compile(r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:[-+])(?P<word>[^}]*))?\}"
                  r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")


def substitute(text: str, values: Mapping[str, str]) -> str:
    """$VAR, ${VAR}, ${VAR:-default} and ${VAR:+alternative}, as Docker expands them."""
    def one(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("plain")
        value = values.get(name, "")
        if match.group("op") == ":-":
            return value or match.group("word")
        if match.group("op") == ":+":
            return match.group("word") if value else ""
        return value

    return _VAR.sub(one, text)
