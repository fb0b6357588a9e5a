"""The one way a setting is declared: a typed, validated, documented ``Config`` model.

Every command's settings (training, evaluation, serving, ...) subclass ``Config``. A field's
docstring is its documentation (``--help`` shows it), its name is its flag (``max_k`` ->
``--max-k``) and its YAML key, and every error names the flag: ``ConfigError("invalid flags:
max_k (--max-k): must be >= 1, got 0")``. Nested configs (a section such
as ``TrainConfig.model``) keep their fields' flat flag names, so a flag never needs a prefix.

Constructing any ``Config`` with a bad value raises ``ConfigError`` (never pydantic's
``ValidationError``), so callers catch one domain error everywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from recsys.errors import ConfigError


def flag(name: str) -> str:
    """The command-line flag of a config field: ``max_k`` -> ``--max-k``."""
    return "--" + name.replace("_", "-")


class Config(BaseModel):
    """Frozen, unknown keys refused, field docstrings as descriptions, errors naming flags."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as err:
            raise ConfigError(describe_errors(err, type(self))) from err

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: Any) -> Any:
        """YAML and Python both let ``true`` pass as 1; a flag given ``true`` for a count is a
        mistake, not a number."""
        if isinstance(value, bool) and info.field_name is not None:
            annotation = cls.model_fields[info.field_name].annotation
            if bool not in leaf_types(annotation) and leaf_types(annotation) & {int, float}:
                raise ValueError("expected a number, not a boolean")
        return value

    @classmethod
    def build(cls, values: dict[str, Any], origin: str = "configuration") -> Self:
        """Validate ``values``; every problem is reported with the key (as a flag) it concerns,
        after ``origin`` (``flags``, a YAML file's path)."""
        odd = [key for key in values if not isinstance(key, str)]
        if odd:
            raise ConfigError(f"invalid {origin}: keys must be names, got {odd[0]!r}")
        try:
            return cls(**values)
        except ConfigError as err:
            raise ConfigError(f"invalid {origin}: {err}") from err.__cause__

    @classmethod
    def from_yaml(cls, path: Path, overrides: dict[str, Any] | None = None) -> Self:
        """Read a YAML file (a mapping of this config's keys), then apply ``overrides``."""
        return cls.build({**read_yaml_mapping(path), **(overrides or {})}, origin=str(path))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    @classmethod
    def field_defaults(cls) -> dict[str, Any]:
        """Each field's default (``PydanticUndefined`` dropped: required fields have none)."""
        return {
            name: field.get_default(call_default_factory=True)
            for name, field in cls.model_fields.items()
            if field.default is not PydanticUndefined or field.default_factory is not None
        }


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """A YAML file holding a mapping; errors name the file and what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from err
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must hold a mapping of config keys")
    return values


def describe_errors(err: ValidationError, config: type[Config]) -> str:
    """One line naming every problem's key and flag (the innermost key of a nested section is
    its flag: sections never prefix their flags). A check across a section's fields has no flag
    of its own: its message names the fields. A value that fits none of a field's alternatives
    (``int | "auto"``) is one problem, its alternatives joined."""
    sections = {
        name
        for name, field in config.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, Config)
    }
    problems: dict[str, list[str]] = {}
    for error in err.errors():
        keys = [str(part) for part in error["loc"] if not isinstance(part, int)]
        path = _field_path(config, keys)
        key = path[-1] if path else (keys[-1] if keys else "")
        label = f"{key} ({flag(key)})"
        message = _friendly(error, _field(config, path))
        if error["type"] == "extra_forbidden":
            problems.setdefault(f"unknown key {label}", [])
        elif not key or (key in sections and error["type"] == "value_error"):
            problems.setdefault(message, [])
        else:
            problems.setdefault(label, []).append(message)
    return "; ".join(
        f"{head}: {_alternatives(messages)}" if messages else head
        for head, messages in problems.items()
    )


def _alternatives(messages: list[str]) -> str:
    """``must be >= 1, got 0`` + ``expected one of 'auto', got 0`` -> ``must be >= 1 or
    expected one of 'auto', got 0`` (the value said once, at the end)."""
    unique = list(dict.fromkeys(messages))
    suffixes = {message.rpartition(", got ")[2] for message in unique}
    if len(unique) > 1 and len(suffixes) == 1 and all(", got " in m for m in unique):
        heads = [message.rpartition(", got ")[0] for message in unique]
        return " or ".join(heads) + f", got {suffixes.pop()}"
    return " or ".join(unique)


def _field_path(config: type[Config], keys: list[str]) -> list[str]:
    """The leading keys of a location that name fields (a union's branch tags come after)."""
    path: list[str] = []
    current: Any = config
    for key in keys:
        fields = getattr(current, "model_fields", None)
        if not isinstance(fields, dict) or key not in fields:
            break
        path.append(key)
        current = fields[key].annotation
    return path


_BOUNDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def _field(config: type[Config], keys: list[str]) -> FieldInfo | None:
    """The field a location names, through nested sections."""
    field: FieldInfo | None = None
    current: Any = config
    for key in keys:
        fields = getattr(current, "model_fields", None)
        if not isinstance(fields, dict) or key not in fields:
            return None
        field = fields[key]
        current = field.annotation
    return field


def _friendly(error: Any, field: FieldInfo | None) -> str:
    """Pydantic's message, in the words a flag's user reads: the allowed range or choices,
    and the value given."""
    kind = error["type"]
    given = error.get("input")
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        bounds = [
            (name, getattr(item, name))
            for item in (field.metadata if field is not None else [])
            for name in _BOUNDS
            if getattr(item, name, None) is not None
        ]
        if len(bounds) == 2:
            (low_name, low), (high_name, high) = sorted(bounds, key=lambda b: b[0] in ("le", "lt"))
            opening, closing = (
                ("[" if low_name == "ge" else "("),
                ("]" if high_name == "le" else ")"),
            )
            return f"must be in {opening}{low}, {high}{closing}, got {given!r}"
        name, bound = next(
            (name, error["ctx"][name]) for name in _BOUNDS if name in error.get("ctx", {})
        )
        return f"must be {_BOUNDS[name]} {bound}, got {given!r}"
    if kind == "literal_error":
        return f"expected one of {error['ctx']['expected']}, got {given!r}"
    if kind in ("int_parsing", "int_type", "float_parsing", "float_type"):
        return f"expected a number, got {given!r}"
    return str(error["msg"]).removeprefix("Value error, ")


def leaf_types(annotation: Any) -> set[Any]:
    """The plain types and ``Literal`` choices an annotation admits (``X | None`` included).

    >>> sorted(map(str, leaf_types(int | None)))
    ["<class 'NoneType'>", "<class 'int'>"]
    """
    if get_origin(annotation) is None:
        return {annotation}
    return {leaf for arg in get_args(annotation) for leaf in leaf_types(arg)}
