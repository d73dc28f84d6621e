"""Text helpers shared by the channels: control characters, one-line fields, safe templates."""

import unicodedata
from collections.abc import Callable, Mapping
from string import Formatter


def has_control_characters(text: str) -> bool:
    """Return whether text holds control, format or other non-printing characters."""
    return any(unicodedata.category(char).startswith("C") for char in text)


def one_line(text: str) -> str:
    """Collapse text to one line: control characters (CR, LF, tab, ...) become spaces."""
    cleaned = "".join(" " if has_control_characters(char) else char for char in text)
    return " ".join(cleaned.split())


class TemplateError(ValueError):
    """A template uses a placeholder that is not offered, or a format it may not use."""


def _identity(text: str) -> str:
    return text


def fill_template(
    template: str, fields: Mapping[str, str], escape: Callable[[str], str] = _identity
) -> str:
    """Replace each "{field}" in template with escape(fields[field]); "{{" is a literal brace."""
    parts: list[str] = []
    try:
        parsed = list(Formatter().parse(template))
    except ValueError as exc:
        raise TemplateError(f"The template is malformed: {exc}.") from exc
    for literal, field, format_spec, conversion in parsed:
        parts.append(escape(literal))
        if field is None:
            continue
        if field not in fields or format_spec or conversion:
            allowed = ", ".join("{" + name + "}" for name in fields)
            raise TemplateError(
                f"The template uses {{{field}}}; only these placeholders are allowed: {allowed}."
            )
        parts.append(escape(fields[field]))
    return "".join(parts)
