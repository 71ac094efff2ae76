"""Turn corral.toml text into a validated `Spec`, or a `SpecError` naming every problem.

Each problem is reported as `FILE:LINE:COL: key.path: what is wrong`, so editors and
humans can jump to it. Reading the file is the only I/O here. pydantic and the models are
imported by the first parse, so `locate_spec` (where is the project?) costs no start-up.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corral.errors import SpecError

if TYPE_CHECKING:
    from pydantic import ValidationError

    from corral.spec.model import Spec

DEFAULT_SPEC = "corral.toml"
# docs/spec.md is in the source tree only; `corral schema` works wherever corral is installed.
SCHEMA_HINT = "`corral schema` prints every key with its description (as docs/spec.md does)"


@dataclass(frozen=True)
class LoadedSpec:
    """A validated spec and where it came from."""

    spec: Spec
    path: Path
    digest: str

    @property
    def folder(self) -> Path:
        return self.path.parent


def spec_digest(spec: Spec) -> str:
    """A content digest of the spec's meaning (key order and comments do not count)."""
    canonical = json.dumps(spec.model_dump(mode="json", by_alias=True), sort_keys=True,
                           separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def parse_spec(text: str, filename: str = DEFAULT_SPEC) -> Spec:
    """Validate TOML text; raise SpecError listing every problem with its position."""
    from pydantic import ValidationError

    from corral.spec.model import Spec

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{filename}: not valid TOML: {exc}",
                        hint="fix the syntax at the line and column shown") from None
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        problems = _describe(exc, text, filename)
        noun = "problem" if len(problems) == 1 else "problems"
        raise SpecError(f"{filename}: {len(problems)} {noun} in the spec", problems=problems,
                        hint=SCHEMA_HINT) from None
    if spec.environments or spec.pipeline:
        _check_environments(spec, text, filename)
    return spec


def _check_environments(spec: Spec, text: str, filename: str) -> None:
    """What environments and the pipeline say across sections (spec/environments.py),
    located at their table."""
    from corral.spec.environments import check_environments, check_pipeline
    from corral.spec.locate import locate_keys, nearest_spot

    for section, check in (("environments", check_environments), ("pipeline", check_pipeline)):
        try:
            check(spec)
        except ValueError as exc:
            spot = nearest_spot(locate_keys(text), (section,))
            where = f"{filename}:{spot[0]}:{spot[1]}" if spot else filename
            raise SpecError(f"{filename}: 1 problem in the spec",
                            problems=[f"{where}: {section}: {exc}"],
                            hint="docs/spec.md's [environments] and [pipeline] sections") \
                from None


def locate_spec(path: str | Path = DEFAULT_SPEC) -> Path:
    """The absolute path of a spec file that exists, without reading or validating it (for
    commands that only need where the project is); the SpecError load_spec gives if not."""
    file = Path(path)
    if not file.exists():
        raise _missing(file)
    return file.resolve()


def _missing(file: Path) -> SpecError:
    return SpecError(f"{file}: no such spec file",
                     hint="run `corral init` to create one, or pass -f PATH")


def load_spec(path: str | Path = DEFAULT_SPEC) -> LoadedSpec:
    """Read and validate a spec file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _missing(file) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{file}: cannot read the spec: {exc}") from None
    spec = parse_spec(text, str(file))
    return LoadedSpec(spec=spec, path=file.resolve(), digest=spec_digest(spec))


def _describe(exc: ValidationError, text: str, filename: str) -> list[str]:
    from corral.spec.locate import locate_keys, nearest_spot
    from corral.spec.messages import describe_error

    spots = locate_keys(text)
    problems: list[str] = []
    for error in exc.errors():
        path = tuple(str(part) for part in error["loc"] if not _is_union_tag(part))
        spot = nearest_spot(spots, path)
        where = f"{filename}:{spot[0]}:{spot[1]}" if spot else filename
        problem = f"{where}: {_key(path)}: {describe_error(error, path)}"
        if problem not in problems:  # a union reports one mistake once per member
            problems.append(problem)
    return problems


def _key(path: tuple[str, ...]) -> str:
    """`images.web.copy[0].src`, as a user would name the key."""
    text = ""
    for part in path:
        text += f"[{part}]" if part.isdigit() else (f".{part}" if text else part)
    return text or "(top level)"


def _is_union_tag(part: Any) -> bool:
    # pydantic puts the union member's type name in loc (e.g. "str", "RunStep"); users
    # never wrote those, so they are left out of the key path.
    return isinstance(part, str) and (part[:1].isupper() or part in {"str", "int", "float"})
