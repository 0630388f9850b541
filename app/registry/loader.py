"""Load the park registry YAML and report errors with file, line and what is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from app.registry.models import Registry

if TYPE_CHECKING:
    import yaml

Path_ = tuple[str | int, ...]


class RegistryError(ValueError):
    """The registry file cannot be used; the message names the file, line and problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def _to_python(
    node: yaml.Node, path: Path_, lines: dict[Path_, int], scalars: yaml.SafeLoader
) -> Any:
    """Build plain Python values from a YAML node tree, remembering each path's line."""
    import yaml

    # PyYAML's loaders drop positions; walking the composed nodes keeps them for errors
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _to_python(key_node, (*path, "<key>"), lines, scalars)
            if key in out:
                raise RegistryError([f"{key_node.start_mark.line + 1}: duplicate key {key!r}"])
            out[key] = _to_python(value_node, (*path, key), lines, scalars)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(item, (*path, i), lines, scalars) for i, item in enumerate(node.value)]
    return scalars.construct_object(node)


def _line_for(loc: Path_, lines: dict[Path_, int]) -> int | None:
    # pydantic reports the deepest location; fall back to the nearest parent that exists
    for cut in range(len(loc), -1, -1):
        line = lines.get(tuple(loc[:cut]))
        if line is not None:
            return line
    return None


def _link_problems(data: dict[str, Any], lines: dict[Path_, int], source: str) -> list[str]:
    """Duplicate ids and dangling included_in, reported at the offending line."""
    problems: list[str] = []
    parks = data.get("parks")
    if not isinstance(parks, list):
        return problems
    park_ids: set[Any] = set()
    for pi, park in enumerate(parks):
        if not isinstance(park, dict):
            continue
        if park.get("id") in park_ids:
            problems.append(
                f"{source}:{lines.get(('parks', pi, 'id'))}: duplicate park id {park.get('id')!r}"
            )
        park_ids.add(park.get("id"))
        devices = park.get("devices") or []
        if not isinstance(devices, list):
            continue
        ids = [d.get("id") for d in devices if isinstance(d, dict)]
        seen: set[Any] = set()
        for di, dev in enumerate(devices):
            if not isinstance(dev, dict):
                continue
            where = f"{source}:{lines.get(('parks', pi, 'devices', di))}"
            if dev.get("id") in seen:
                problems.append(
                    f"{where}: duplicate device id {dev.get('id')!r} in park {park.get('id')!r}"
                )
            seen.add(dev.get("id"))
            parent = dev.get("included_in")
            if parent is not None and (parent not in ids or parent == dev.get("id")):
                problems.append(
                    f"{where}: device {dev.get('id')!r}: included_in {parent!r}"
                    " is not another device of this park"
                )
    return problems


def parse_registry(text: str, source: str = "<registry>") -> Registry:
    """Parse registry YAML text; raise RegistryError with line-accurate messages."""
    # imported here: a collector that starts on the stored registry never parses YAML
    # (docs/performance.md, "Collector start-up")
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise RegistryError([f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}"]) from exc
    if root is None:
        raise RegistryError([f"{source}: the file is empty; expected a 'parks:' list"])
    lines: dict[Path_, int] = {}
    try:
        data = _to_python(root, (), lines, yaml.SafeLoader(""))
    except RegistryError as exc:
        raise RegistryError([f"{source}:{p}" for p in exc.problems]) from exc
    if not isinstance(data, dict) or "parks" not in data:
        raise RegistryError([f"{source}:1: expected a mapping with a 'parks:' list"])
    problems = _link_problems(data, lines, source)
    if problems:
        raise RegistryError(problems)
    try:
        return Registry.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc: Path_ = tuple(
                p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))
            )
            line = _line_for(loc, lines)
            where = f"{source}:{line}" if line else source
            dotted = ".".join(str(p) for p in loc) or "(top level)"
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {dotted}: {msg}")
        raise RegistryError(problems) from exc


def load_registry(path: str | Path) -> Registry:
    """Read and validate the registry file at *path*."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise RegistryError([f"{p}: cannot read the park registry: {exc.strerror or exc}"]) from exc
    return parse_registry(text, str(p))
