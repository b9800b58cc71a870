"""The New run form's widgets, generated from ``core.config``'s setting descriptions.

Each described RunConfig field gets one widget, keyed ``nr_<field>``, chosen from its type
(a checkbox for a flag, a select box for choices, a multiselect for a list of choices, a
number input, a text box) and placed in its section. ``fill`` puts a config into the
widgets, ``read`` takes the values back, ``render`` draws a section. Fields whose
description says ``widget="custom"`` are drawn by the page itself (their choices come from
the registries and the records); ``"hidden"`` ones never appear.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import streamlit as st

from core import config as run_config
from core.errors import ImoriError

PREFIX = "nr_"
KEEP = "session"  # form values survive visits to other pages


def key(name: str) -> str:
    return PREFIX + name


def _cls(config_cls: type | None) -> type:
    return config_cls or run_config.RunConfig  # looked up now: a test may extend it


def generated_fields(config_cls: type | None = None) -> list[tuple[str, run_config.Setting]]:
    """The fields this module draws (not custom, not hidden)."""
    return [(n, d) for n, d in run_config.described_fields(_cls(config_cls)) if d.widget not in ("custom", "hidden")]


def _to_widget(cls: type, name: str, description: run_config.Setting, value: Any) -> Any:
    base, optional = run_config.field_type(cls, name)
    if base is tuple:
        if description.choices:
            return list(value or ())
        return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) if value else ""
    if base is str and not description.choices:
        return value or ""
    if base is int and value is not None:
        return int(value)
    if base is float and value is not None:
        return float(value)
    return value


def _from_widget(cls: type, name: str, description: run_config.Setting, value: Any) -> Any:
    base, optional = run_config.field_type(cls, name)
    if base is tuple:
        if description.choices:
            return tuple(value or ())
        return description.parse(value) if description.parse and value else (None if optional else ())
    if base is str and not description.choices:
        text = (value or "").strip()
        return text or (None if optional else "")
    return value


def fill(config: Any) -> None:
    """Put ``config`` into the generated widgets."""
    cls = type(config)
    for name, description in generated_fields(cls):
        st.session_state[key(name)] = _to_widget(cls, name, description, getattr(config, name))


def read(config_cls: type | None = None) -> dict[str, Any]:
    """The generated widgets' values as plain settings (a widget never drawn keeps its
    filled value, so a setting hidden by ``show`` keeps what the recipe said)."""
    cls = _cls(config_cls)
    defaults = cls()
    values = {}
    for name, description in generated_fields(cls):
        raw = st.session_state.get(key(name), _to_widget(cls, name, description, getattr(defaults, name)))
        values[name] = _from_widget(cls, name, description, raw)
    return values


def _number_kind(cls: type, name: str) -> type:
    return run_config.field_type(cls, name)[0]


def widget(name: str, description: run_config.Setting, context: Mapping[str, Any], config_cls: type | None = None) -> None:
    """Draw one setting's widget (nothing when its ``show`` rule says it does not apply)."""
    cls = _cls(config_cls)
    if description.show is not None and not description.show(context):
        return
    base, optional = run_config.field_type(cls, name)
    label, k, help_text = description.label_for(name), key(name), description.help
    placeholder = description.placeholder
    if base is bool:
        st.checkbox(label, key=k, help=help_text, persist_state=KEEP)
    elif base is tuple and description.choices:
        st.multiselect(label, list(description.choices), key=k, help=help_text, persist_state=KEEP)
    elif description.choices:
        options = ([None] if optional else []) + list(description.choices)
        st.selectbox(label, options, key=k, help=help_text, persist_state=KEEP,
                     format_func=lambda o: (placeholder or "default") if o is None else str(o))
    elif description.widget == "slider":
        kind = _number_kind(cls, name)
        st.slider(label, kind(description.minimum), kind(description.maximum), key=k, step=kind(description.step),
                  help=help_text, persist_state=KEEP)
    elif base in (int, float):
        kind = base
        bounds = {
            arg: kind(value)
            for arg, value in (("min_value", description.minimum), ("max_value", description.maximum),
                               ("step", description.step))
            if value is not None
        }
        if kind is float:
            bounds["format"] = "%.6g"
        st.number_input(label, key=k, help=help_text, placeholder=placeholder, persist_state=KEEP, **bounds)
    else:
        st.text_input(label, key=k, help=help_text, placeholder=placeholder, persist_state=KEEP)


def render(section: str, context: Mapping[str, Any], *, columns: int = 2, config_cls: type | None = None) -> None:
    """Draw the generated widgets of ``section`` in a grid of ``columns``."""
    cls = _cls(config_cls)
    shown = [
        (n, d) for n, d in generated_fields(cls)
        if d.section == section and (d.show is None or d.show(context))
    ]
    for start in range(0, len(shown), columns):
        cells = st.columns(columns)
        for cell, (name, description) in zip(cells, shown[start : start + columns]):
            with cell:
                widget(name, description, context, cls)


def problems_of(values: Mapping[str, Any], config_cls: type | None = None) -> tuple[Any, list[str]]:
    """(the RunConfig, every reason it cannot run); the config is None when the values
    do not even make one."""
    try:
        config = _cls(config_cls).from_dict(values)
    except (ImoriError, TypeError, ValueError) as err:
        return None, [str(err)]
    return config, config.problems()
