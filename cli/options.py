"""Every run setting as a command-line flag, generated from ``core.config``'s descriptions.

A field of ``RunConfig`` becomes ``--name-with-dashes`` (or the flag its description
names) in the option group of its form section: booleans take ``--x`` / ``--no-x``,
choices are checked by argparse, sizes and lists are read by the setting's own parser.
Every flag defaults to "not given", so a recipe, a config file or a resumed checkpoint
supplies what the user did not say.
"""

from __future__ import annotations

import argparse
import contextlib
import re
from collections.abc import Iterator
from typing import Any

from core import config as run_config
from core.errors import ConfigError
from core.recipes import auto_refusal, recipe_values


def help_text(description: run_config.Setting) -> str:
    text = description.help
    if description.unit and description.unit not in text:
        text += f" ({description.unit})"
    return text.replace("%", "%%")


def add_run_options(parser: argparse.ArgumentParser, config_cls: type | None = None) -> None:
    """Add ``--recipe``, ``--config`` and one flag per described RunConfig field."""
    cls = config_cls or run_config.RunConfig  # looked up now: a test may extend it
    s = argparse.SUPPRESS
    start = parser.add_argument_group("start from")
    start.add_argument("--recipe", default=s, help="a tutorial's recipe: see `imori recipes`")
    start.add_argument(
        "--config", dest="config_file", default=s, metavar="FILE",
        help="settings from a YAML or JSON file (`imori show RUN --config` writes one); flags override it",
    )
    groups = {key: parser.add_argument_group(title.lower()) for key, title in run_config.SECTIONS.items()}
    for name, description in run_config.described_fields(cls):
        flag = description.flag_for(name)
        if not flag:
            continue
        base, _ = run_config.field_type(cls, name)
        kwargs: dict[str, Any] = dict(dest=name, default=s, help=help_text(description))
        if base is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            # Text that a setting parses itself (sizes, lists) is read by RunConfig.from_dict,
            # so a bad value is the same one-line error as everywhere else.
            if description.parse is None and base in (int, float, str):
                kwargs["type"] = base
            if description.choices and base is not tuple:
                kwargs["choices"] = description.choices
            if description.metavar:
                kwargs["metavar"] = description.metavar
        group = groups.get(description.section, parser)
        group.add_argument(flag, **kwargs)
        for alias, value, alias_help in description.aliases:
            group.add_argument(alias, dest=name, action="store_const", const=value, default=s, help=alias_help)
    for option, (kind, text) in run_config.MODEL_OPTION_FLAGS.items():
        groups["model"].add_argument(f"--{option.replace('_', '-')}", dest=f"option:{option}", type=kind, default=s, metavar=option[0].upper(), help=text)


def given_settings(args: argparse.Namespace, config_cls: type | None = None) -> dict[str, Any]:
    """The settings the user gave as flags, and only those."""
    cls = config_cls or run_config.RunConfig
    given = vars(args)
    out = {name: given[name] for name, _ in run_config.described_fields(cls) if name in given}
    options = {key.split(":", 1)[1]: value for key, value in given.items() if key.startswith("option:")}
    if options:
        out["model_options"] = options
    return out


def in_flags(text: str, config_cls: type | None = None) -> str:
    """``text`` (a configuration's problems) with each setting's field name (``max_minutes``)
    as the flag a command-line user types (``--max-minutes``): names with an underscore
    only, so that ordinary words stay words."""
    cls = config_cls or run_config.RunConfig
    for name, description in run_config.described_fields(cls):
        flag = description.flag_for(name)
        if flag and "_" in name:
            text = re.sub(rf"(?<![\w-]){name}\b", flag, text)
    return text


@contextlib.contextmanager
def flags_in_errors() -> Iterator[None]:
    """A ``ConfigError`` raised inside names the flags (``--max-minutes``), not the fields:
    for every command that checks settings, wherever the check runs (``build_config``, or
    ``worker.client.submit`` for ``imori submit``)."""
    try:
        yield
    except ConfigError as err:
        raise ConfigError(in_flags(str(err))) from None


def build_config(args: argparse.Namespace, *, base: dict[str, Any] | None = None, validate: bool = True):
    """RunConfig from (``base`` | a recipe | defaults), then ``--config FILE``, then the flags.
    ``ConfigError`` names the flags (``--max-minutes``), not the fields."""
    with flags_in_errors():
        return _build_config(args, base=base, validate=validate)


def _build_config(args: argparse.Namespace, *, base: dict[str, Any] | None, validate: bool):
    cls = run_config.RunConfig
    given = vars(args)
    values = dict(base or {})
    if "recipe" in given:
        values = run_config.apply_overrides(values, recipe_values(given["recipe"]))
        if values.get("recipe") == "auto":
            refused = auto_refusal(given_settings(args, cls))
            if refused:
                raise ConfigError(refused)
    if "config_file" in given:
        values = run_config.apply_overrides(values, run_config.load_config_file(given["config_file"]))
    config = cls.from_dict(run_config.apply_overrides(values, given_settings(args, cls)))
    return config.validate() if validate else config
