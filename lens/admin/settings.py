"""Settings an administrator changes in the Admin Center, over the environment's defaults.

Each setting is named by its config key (lens.config reads the environment into it). A
row in `setting` overrides it; deleting the row (Reset) brings the environment's value
back. `setting(key)` is what the rest of Lens reads; every change is audited.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from flask import current_app, g
from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session

from lens.admin.audit import audit
from lens.admin.models import Setting
from lens.auth.models import Technician
from lens.invitations.sms import DEFAULT_SMS_TEMPLATE
from lens.invitations.text import TemplateError, fill_template, has_control_characters
from lens.turn import is_turn_server

LANGUAGES = ("en", "nl")
SMS_PLACEHOLDERS = ("link", "pin", "name", "technician", "company")
EMAIL_PLACEHOLDERS = ("name", "technician", "company", "minutes")


class SettingInvalid(ValueError):
    """A value the setting cannot take; the message says why, for the form."""


@dataclass(frozen=True)
class SettingSpec:
    """One setting: how it is shown, parsed and checked."""

    key: str
    section: str
    label: Any
    kind: str  # minutes, days, text, per_language, lines, url, ice_servers
    help: Any = ""
    minimum: int = 0
    maximum: int = 1440
    max_length: int = 500
    placeholders: tuple[str, ...] = field(default=())


SPECS: tuple[SettingSpec, ...] = (
    SettingSpec(
        "LENS_PIN_VALIDITY_MINUTES",
        "sessions",
        _l("PIN and link validity (minutes)"),
        "minutes",
        _l("How long a new session's PIN and join link can be used."),
        minimum=1,
    ),
    SettingSpec(
        "LENS_CONNECTING_TIMEOUT_MINUTES",
        "sessions",
        _l("Connecting session time-out (minutes)"),
        "minutes",
        _l("A customer who opened the link but has not accepted within this time is ended."),
        minimum=1,
    ),
    SettingSpec(
        "LENS_WAITING_TIMEOUT_MINUTES",
        "sessions",
        _l("Waiting session time-out (minutes)"),
        "minutes",
        _l("A session waiting for Start this long is ended. 0: never."),
    ),
    SettingSpec(
        "LENS_IDLE_TIMEOUT_MINUTES",
        "sessions",
        _l("Idle active session time-out (minutes)"),
        "minutes",
        _l("An active session with no activity in its log for this long is ended. 0: never."),
    ),
    SettingSpec(
        "LENS_RETENTION_DAYS",
        "sessions",
        _l("Keep snapshots and recordings (days)"),
        "days",
        _l("Older files are deleted by `flask lens purge`. 0: keep them."),
        maximum=3650,
    ),
    SettingSpec(
        "LENS_CUSTOM_FIELDS",
        "sessions",
        _l("Custom field labels"),
        "lines",
        _l("One label per line, at most five; shown in the New session form and the list."),
        max_length=40,
    ),
    SettingSpec(
        "LENS_ICE_SERVERS",
        "sessions",
        _l("STUN/TURN servers for the browsers"),
        "ice_servers",
        _l('A JSON list, e.g. [{"urls": "stun:stun.example.org:3478"}].'),
        max_length=4000,
    ),
    SettingSpec(
        "LENS_COMPANY_NAME",
        "customer",
        _l("Company name"),
        "text",
        _l("Shown on the customer's pages and available as {company} in invitations."),
        max_length=120,
    ),
    SettingSpec(
        "LENS_COMPANY_LOGO_URL",
        "customer",
        _l("Company logo (address of an image)"),
        "url",
        _l("An https:// address or a path on this server; empty: no logo."),
    ),
    SettingSpec(
        "LENS_EULA_TEXT",
        "customer",
        _l("Licence agreement (EULA)"),
        "per_language",
        _l("Empty: Lens's own text in that language."),
        max_length=10000,
    ),
    SettingSpec(
        "LENS_SMS_TEMPLATE",
        "invitations",
        _l("SMS text"),
        "per_language",
        _l("Empty: Lens's own text. The SMS goes out in the customer's language."),
        max_length=480,
        placeholders=SMS_PLACEHOLDERS,
    ),
    SettingSpec(
        "LENS_EMAIL_SUBJECT",
        "invitations",
        _l("E-mail subject"),
        "per_language",
        _l("Empty: Lens's own subject."),
        max_length=200,
        placeholders=EMAIL_PLACEHOLDERS,
    ),
    SettingSpec(
        "LENS_EMAIL_INTRO",
        "invitations",
        _l("E-mail text above the button"),
        "per_language",
        _l("Empty: Lens's own text."),
        max_length=2000,
        placeholders=EMAIL_PLACEHOLDERS,
    ),
)
SPEC_BY_KEY = {spec.key: spec for spec in SPECS}
SECTIONS = {
    "sessions": _l("Sessions and time-outs"),
    "customer": _l("Customer's pages"),
    "invitations": _l("Invitations"),
}

# Placeholder values for the preview and the check of a template.
SAMPLE = {
    "link": "https://lens.example/j/AbC123",
    "pin": "123456",
    "name": "Jane Customer",
    "technician": "Tess Technician",
    "company": "Example Ltd",
    "minutes": "20",
}


def _stored(db: Session) -> dict[str, Any]:
    """Every stored setting, read once per app context (a request, a socket, a sweep)."""
    cached = g.get("_lens_settings")
    if cached is None:
        cached = {row.key: row.value for row in db.scalars(select(Setting))}
        g._lens_settings = cached
    return cached


def forget_cached() -> None:
    g.pop("_lens_settings", None)


def setting(key: str) -> Any:
    """The setting's value now: the Admin Center's, else the environment's."""
    from lens.extensions import db

    stored = _stored(db.session)
    if key in stored:
        return stored[key]
    return default_of(key)


def default_of(key: str) -> Any:
    """The environment's value (lens.config), as the setting holds it."""
    value = current_app.config.get(key)
    if SPEC_BY_KEY[key].kind == "per_language":
        # one text from the environment serves every language; Lens's own is per language
        if not isinstance(value, str) or not value or value == DEFAULT_SMS_TEMPLATE:
            return {}
        return dict.fromkeys(LANGUAGES, value)
    return value


def localized(key: str, language: str | None) -> str:
    """A per-language setting's text in `language` ("" when Lens's own text applies)."""
    texts = setting(key) or {}
    return texts.get(language or "en") or ""


def ice_config() -> dict[str, Any]:
    """The app's config with the STUN/TURN servers in force (lens.network reads it)."""
    return {**current_app.config, "LENS_ICE_SERVERS": setting("LENS_ICE_SERVERS")}


def is_overridden(key: str) -> bool:
    from lens.extensions import db

    return key in _stored(db.session)


# ----- parsing ---------------------------------------------------------------------------


def _number(spec: SettingSpec, raw: str) -> int:
    try:
        value = int(raw.strip())
    except ValueError as exc:
        raise SettingInvalid(str(_l("Enter a whole number."))) from exc
    if not spec.minimum <= value <= spec.maximum:
        raise SettingInvalid(
            str(_l("Enter a number from %(low)d to %(high)d.", low=spec.minimum, high=spec.maximum))
        )
    return value


def _text(spec: SettingSpec, raw: str, *, multiline: bool = False) -> str:
    value = raw.replace("\r\n", "\n").strip()
    if len(value) > spec.max_length:
        raise SettingInvalid(str(_l("At most %(count)d characters.", count=spec.max_length)))
    lines = value.split("\n") if multiline else [value]
    if any(has_control_characters(line) for line in lines):
        raise SettingInvalid(str(_l("The text contains characters that are not allowed.")))
    if spec.placeholders and value:
        try:
            fill_template(value, {name: SAMPLE[name] for name in spec.placeholders})
        except TemplateError as exc:
            raise SettingInvalid(str(exc)) from exc
    return value


def _lines(spec: SettingSpec, raw: str) -> list[str]:
    labels = [line.strip() for line in raw.replace("\r\n", "\n").split("\n") if line.strip()]
    if not labels:
        raise SettingInvalid(str(_l("Enter at least one label.")))
    if len(labels) > 5:
        raise SettingInvalid(str(_l("At most five labels.")))
    return [_text(spec, label) for label in labels]


def _url(spec: SettingSpec, raw: str) -> str:
    value = _text(spec, raw)
    if not value:
        return ""
    parts = urlsplit(value)
    local = not parts.scheme and not parts.netloc and value.startswith("/")
    if not (parts.scheme == "https" and parts.netloc) and not local:
        raise SettingInvalid(str(_l("Use an https:// address or a path starting with /.")))
    return value


def _ice_servers(spec: SettingSpec, raw: str) -> list[dict[str, Any]]:
    if len(raw) > spec.max_length:
        raise SettingInvalid(str(_l("At most %(count)d characters.", count=spec.max_length)))
    try:
        servers = json.loads(raw or "[]")
    except ValueError as exc:
        raise SettingInvalid(str(_l("This is not valid JSON."))) from exc
    allowed_keys = {"urls", "username", "credential"}
    if not isinstance(servers, list) or not all(
        isinstance(s, dict) and "urls" in s and set(s) <= allowed_keys for s in servers
    ):
        raise SettingInvalid(
            str(_l('Give a list of servers, each {"urls": …} with optional username, credential.'))
        )
    for server in servers:
        urls = server["urls"] if isinstance(server["urls"], list) else [server["urls"]]
        if not urls or not all(
            isinstance(u, str) and u.split(":", 1)[0] in ("stun", "turn", "turns") for u in urls
        ):
            raise SettingInvalid(str(_l("Each address starts with stun:, turn: or turns:.")))
        if not is_turn_server(server):
            continue
        # the same rules as LENS_ICE_SERVERS (lens.network): no TURN password in any page
        if "username" in server or "credential" in server:
            raise SettingInvalid(
                str(
                    _l(
                        "A TURN server takes no username or password here: each page and "
                        "the media server get short-lived ones made with LENS_TURN_SECRET."
                    )
                )
            )
        if not current_app.config.get("LENS_TURN_SECRET"):
            raise SettingInvalid(
                str(
                    _l(
                        "A TURN server needs LENS_TURN_SECRET (coturn's static-auth-secret) "
                        "in the server's settings."
                    )
                )
            )
    return servers


PARSERS: dict[str, Callable[[SettingSpec, str], Any]] = {
    "minutes": _number,
    "days": _number,
    "text": _text,
    "url": _url,
    "lines": _lines,
    "ice_servers": _ice_servers,
}


def parse(spec: SettingSpec, form: dict[str, str]) -> Any:
    """The value the submitted form asks for, or SettingInvalid."""
    if spec.kind == "per_language":
        return {
            lang: _text(spec, form.get(f"{spec.key}.{lang}", ""), multiline=True)
            for lang in LANGUAGES
        }
    return PARSERS[spec.kind](spec, form.get(spec.key, ""))


def as_text(value: Any) -> str:
    """A value as the audit log shows it."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def change_setting(db: Session, key: str, value: Any, actor: Technician) -> bool:
    """Store a parsed value (audited); False when it equals the value in force."""
    before = setting(key)
    if before == value:
        return False
    row = db.get(Setting, key) or Setting(key=key)
    row.value = value
    row.updated_by_id = actor.id
    db.add(row)
    audit(db, actor, "setting", key, "value", as_text(before), as_text(value))
    forget_cached()
    return True


def reset_setting(db: Session, key: str, actor: Technician) -> bool:
    """Back to the environment's value (audited); False when it was not changed."""
    row = db.get(Setting, key)
    if row is None:
        return False
    audit(db, actor, "setting", key, "value", as_text(row.value), as_text(default_of(key)))
    db.delete(row)
    forget_cached()
    return True


def preview(spec: SettingSpec, text: str) -> str:
    """A template filled with sample values, as the customer would read it."""
    if not spec.placeholders:
        return text
    return fill_template(text, {name: SAMPLE[name] for name in spec.placeholders})
