"""The one way a ``recsys`` command is built: its flags come from its typed ``Config``.

``config_command`` turns a ``recsys.config.Config`` class into a command: one flag per field
(nested sections' fields too, without a prefix), help from the field's docstring, ``--config
FILE.yaml`` for any subset of the keys, flags overriding the file, and every error naming the
flag. A command adds only what is not a setting (its input and output paths) as ``Option``\\ s.
A typed field without a default is a required flag; a one-letter field also gets ``-x``.
Nothing is listed twice, so a new config field is a new flag with nothing else to write.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, get_origin

import typer
import yaml
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from recsys.config import Config, flag, leaf_types, read_yaml_mapping

_NONE_WORDS = {"none", "null"}
CONFIG_OPTION = "config"
CONTEXT = "context"
_NOT_GIVEN = ("DEFAULT", "DEFAULT_MAP")
"""Where a flag's value came from when the user did not give it (compared by name: typer may
bring its own copy of click's ``ParameterSource``)."""
_TYPED = (int, float, str, Path)
"""Field types that become typed flags with their default (shown in --help, parsed by click);
any other (``Literal`` choices, ``X | None``, unions) is text read as YAML and checked by the
config, so that ``none`` and every choice stay expressible."""


@dataclass(frozen=True)
class Option:
    """A flag that is not a setting (an input or output path, ``--overwrite``), typed as typer
    expects: ``Option("out", Annotated[Path, typer.Option(help=...)])``."""

    name: str
    annotation: Any
    default: Any = inspect.Parameter.empty


OVERWRITE = Option(
    "overwrite", Annotated[bool, typer.Option(help="Replace --out if it exists.")], False
)
"""The flag of every command that writes an ``--out`` (an existing one is refused without it)."""


def config_fields(config: type[Config]) -> Iterator[tuple[str, FieldInfo, str]]:
    """Every leaf field as (name, field, section): a nested ``Config`` contributes its fields."""
    for name, field in config.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, Config):
            for inner, inner_field, _ in config_fields(annotation):
                yield inner, inner_field, name
        else:
            yield name, field, ""


def parse_flag_value(raw: str, field: FieldInfo) -> Any:
    """A flag's text as the field expects it: text stays text for a text field (optional or
    not: ``--test-cutoff 1700000000`` is a string to parse later); otherwise a
    YAML scalar (``4`` -> 4, ``0.5`` -> 0.5, ``[1, 2]`` -> a list); ``none`` -> None unless
    ``none`` is one of the field's choices (``--scheduler none``)."""
    word = raw.strip().lower()
    leaves = leaf_types(field.annotation)
    if word in _NONE_WORDS and word not in leaves:
        return None
    if leaves - {type(None)} <= {str, Path} | {leaf for leaf in leaves if isinstance(leaf, str)}:
        return raw
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def build_config(
    config: type[Config],
    config_file: Path | None,
    given: Mapping[str, Any],
) -> Config:
    """The YAML file's keys (if any), then every flag that was given (flat names; a nested
    section's keys are placed in their section)."""
    sections = {name: section for name, _, section in config_fields(config) if section}
    base = read_yaml_mapping(config_file) if config_file is not None else {}
    values: dict[str, Any] = dict(base)
    for name, value in given.items():
        section = sections.get(name)
        if section:
            nested = values.get(section)
            nested = dict(nested) if isinstance(nested, dict) else {}
            values[section] = {**nested, name: value}
            values.pop(name, None)  # a flat key in the file is overridden by the flag
        else:
            values[name] = value
    origin = str(config_file) if config_file is not None else "flags"
    return config.build(values, origin=origin)


def config_command(
    config: type[Config],
    run: Callable[..., None],
    options: Sequence[Option],
    doc: str,
    config_file: Callable[[dict[str, Any], Path | None], Path | None] | None = None,
) -> Callable[..., None]:
    """A typer command: ``options``, ``--config``, then one flag per config field.

    The command calls ``run(settings, **options)``. ``config_file(options, given_file)`` may
    choose the YAML to start from (``recsys train --resume`` reads the run's own config.yaml).
    """
    fields = {name: field for name, field, _ in config_fields(config)}
    taken = {option.name for option in options} | {CONFIG_OPTION, CONTEXT}
    clash = taken & set(fields)
    if clash:
        raise ValueError(f"config fields clash with the command's options: {sorted(clash)}")

    def command(**kwargs: Any) -> None:
        context = kwargs.pop(CONTEXT)
        fixed = {option.name: kwargs.pop(option.name) for option in options}
        given_file: Path | None = kwargs.pop(CONFIG_OPTION)
        file = config_file(fixed, given_file) if config_file is not None else given_file
        given = {
            name: _from_flag(raw, fields[name])
            for name, raw in kwargs.items()
            if _given(context, name)
        }
        run(build_config(config, file, given), **fixed)

    parameters = [_parameter(CONTEXT, typer.Context, inspect.Parameter.empty)]
    parameters += [_parameter(o.name, o.annotation, o.default) for o in options]
    parameters.append(
        _parameter(
            CONFIG_OPTION,
            Annotated[
                Path | None,
                typer.Option(help="A YAML file of any of the keys below; flags override it."),
            ],
            None,
        )
    )
    parameters += [
        _field_parameter(name, field, section) for name, field, section in config_fields(config)
    ]
    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__doc__ = inspect.cleandoc(doc)
    return command


def _given(context: Any, name: str) -> bool:
    source = context.get_parameter_source(name)
    return source is not None and source.name not in _NOT_GIVEN


def _from_flag(raw: Any, field: FieldInfo) -> Any:
    if isinstance(raw, str) and field.annotation not in _TYPED:
        return parse_flag_value(raw, field)
    if isinstance(raw, list):
        return [parse_flag_value(item, field) if isinstance(item, str) else item for item in raw]
    return raw  # a bool flag


def _parameter(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
    )


def _field_parameter(name: str, field: FieldInfo, section: str) -> inspect.Parameter:
    """A field's flag: ``--x/--no-x`` for a boolean, repeatable for a list, else one value."""
    description = " ".join((field.description or "").split())
    default = field.get_default(call_default_factory=True)
    panel = f"{section.capitalize()} keys" if section else "Config keys"
    common: dict[str, Any] = {"help": description, "rich_help_panel": panel}
    if field.annotation not in _TYPED and leaf_types(field.annotation) != {bool}:
        shown = "required" if default is PydanticUndefined else f"default: {_shown(default)}"
        common["help"] = f"{description} ({shown})"
    leaves = leaf_types(field.annotation)
    names = _flag_names(name)
    if leaves == {bool}:
        option = typer.Option(f"{flag(name)}/--no-{name.replace('_', '-')}", **common)
        return _parameter(name, Annotated[bool, option], default)
    if field.annotation in _TYPED:
        option = typer.Option(*names, **common)
        required = default is PydanticUndefined
        return _parameter(
            name,
            Annotated[field.annotation, option],
            inspect.Parameter.empty if required else default,
        )
    if get_origin(field.annotation) is list:
        option = typer.Option(*names, metavar=_metavar(leaves), **common)
        return _parameter(name, Annotated[list[str] | None, option], None)
    option = typer.Option(*names, metavar=_metavar(leaves), **common)
    return _parameter(name, Annotated[str | None, option], None)


def _flag_names(name: str) -> tuple[str, ...]:
    """``--name``; a one-letter field also answers to ``-x`` (``recsys recommend -k 5``)."""
    return (f"-{name}", flag(name)) if len(name) == 1 else (flag(name),)


def _shown(default: Any) -> str:
    if isinstance(default, tuple | list):
        return ",".join(str(item) for item in default)
    return str(default)


def _metavar(leaves: set[Any]) -> str:
    choices = sorted(leaf for leaf in leaves if isinstance(leaf, str))
    names = {int: "INTEGER", float: "FLOAT", str: "TEXT", Path: "PATH"}
    kinds = [names[leaf] for leaf in (int, float, str, Path) if leaf in leaves]
    if choices:
        kinds.insert(0, "|".join(choices))
    if type(None) in leaves:
        kinds.append("none")
    return " | ".join(kinds) or "VALUE"
