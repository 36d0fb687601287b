"""Small, strict helpers for reading validated YAML configuration files.

Every accessor takes the file path and a dotted field path so that errors name both, e.g.
``configs/devices/nano.yaml: field 'gpu.levels_hz' must be a non-empty list of positive numbers``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from e4gym.errors import ConfigError

_MISSING = object()


class _DuplicateKey(yaml.YAMLError):
    """A mapping repeats a key (raised while loading; :func:`load_yaml` turns it into a ConfigError)."""

    def __init__(self, key: object, line: int, first_line: int) -> None:
        super().__init__(key, line, first_line)
        self.key, self.line, self.first_line = key, line, first_line


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e5`` / ``2.5e-9`` as floats (YAML 1.2), not as strings, and refuses a
    mapping that repeats a key (plain PyYAML silently keeps the last value)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """The mapping of ``node``; raises :class:`_DuplicateKey` on the second occurrence of a key.

        Keys brought in by a merge (``<<: *anchor``) may be overridden, as YAML specifies; only keys written
        twice in the same mapping are refused.
        """
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    hash(key)
                except TypeError:  # an unhashable key: the base class reports it
                    continue
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise _DuplicateKey(key, line, seen[key])
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def load_yaml(path: Path) -> dict[str, Any]:
    """Read ``path`` as a YAML mapping.

    Raises:
        ConfigError: the file is missing, is not valid YAML, repeats a key in a mapping (the message names the
            key, the file and the line), or is not a mapping at the top level.
    """
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the file ({exc.strerror})") from exc
    try:
        data = yaml.load(text, Loader=_Loader)
    except _DuplicateKey as exc:
        raise ConfigError(
            f"{path}:{exc.line}: duplicate key {exc.key!r} (first on line {exc.first_line}); a key may appear once "
            "in a mapping: delete one of them"
        ) from None
    except yaml.YAMLError as exc:
        # PyYAML words its errors over several lines (with a source excerpt); one line names the problem and where.
        mark = getattr(exc, "problem_mark", None)
        if isinstance(exc, yaml.MarkedYAMLError) and mark is not None and exc.problem:
            context = f" ({exc.context})" if exc.context else ""
            raise ConfigError(f"{path}:{mark.line + 1}: not valid YAML: {exc.problem} at line {mark.line + 1}, "
                              f"column {mark.column + 1}{context}") from exc
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of fields at the top level, got {type(data).__name__}")
    return data


class Fields:
    """Typed, path-aware access to one mapping of a YAML file."""

    def __init__(self, data: Mapping[str, Any], file: Path | str, prefix: str = "") -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{file}: field '{prefix.rstrip('.')}' must be a mapping, got {type(data).__name__}")
        self.data = data
        self.file = file
        self.prefix = prefix

    def _name(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def fail(self, key: str, expected: str, got: Any = _MISSING) -> ConfigError:
        """Build the error for field ``key`` that should have been ``expected``."""
        tail = "" if got is _MISSING else f", got {got!r}"
        return ConfigError(f"{self.file}: field '{self._name(key)}' must be {expected}{tail}")

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        if key not in self.data:
            if default is _MISSING:
                raise ConfigError(f"{self.file}: missing required field '{self._name(key)}'")
            return default
        return self.data[key]

    def sub(self, key: str, default: Any = _MISSING) -> Fields:
        """The nested mapping ``key`` (an empty one if absent and a default is given)."""
        value = self.raw(key, default)
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise self.fail(key, "a mapping", value)
        return Fields(value, self.file, f"{self._name(key)}.")

    def str(self, key: str, default: Any = _MISSING) -> str:
        value = self.raw(key, default)
        if not isinstance(value, str) or not value:
            raise self.fail(key, "a non-empty string", value)
        return value

    def number(
        self,
        key: str,
        default: Any = _MISSING,
        *,
        min: float | None = None,
        max: float | None = None,
        strict_min: bool = False,
    ) -> float:
        if key not in self.data and default is not _MISSING:
            return float(default)
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.fail(key, "a finite number", value)
        if min is not None and (value < min or (strict_min and value <= min)):
            raise self.fail(key, f"{'>' if strict_min else '>='} {min}", value)
        if max is not None and value > max:
            raise self.fail(key, f"<= {max}", value)
        return float(value)

    def int(self, key: str, default: Any = _MISSING, *, min: int | None = None) -> int:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, "an integer", value)
        if min is not None and value < min:
            raise self.fail(key, f"an integer >= {min}", value)
        return int(value)

    def bool(self, key: str, default: Any = _MISSING) -> bool:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, "true or false", value)
        return value

    def numbers(self, key: str, default: Any = _MISSING, *, positive: bool = True) -> tuple[float, ...]:
        value = self.raw(key, default)
        ok = isinstance(value, Sequence) and not isinstance(value, str) and len(value) > 0
        ok = ok and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value
        )
        if ok and positive:
            ok = all(v > 0 for v in value)
        if not ok:
            kind = "positive numbers" if positive else "numbers"
            raise self.fail(key, f"a non-empty list of {kind}", value)
        return tuple(float(v) for v in value)

    def check_known(self, allowed: set[str]) -> None:
        """Refuse keys this mapping should not have (catches typos in config files)."""
        unknown = sorted(set(self.data) - allowed)
        if unknown:
            where = f"in '{self.prefix.rstrip('.')}'" if self.prefix else "at the top level"
            raise ConfigError(
                f"{self.file}: unknown field(s) {unknown} {where}; allowed: {sorted(allowed)}"
            )
