"""Translations: every marked string has a Dutch (and English) translation, pages follow the
browser's language or the chosen one.

Fails on a string nobody translated yet: run `bin/i18n`, translate what it lists in
lens/translations/nl/LC_MESSAGES/messages.po, run `bin/i18n` again.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from sqlalchemy import select

from lens.extensions import db
from lens.sessions.models import LensSession

ROOT = Path(__file__).resolve().parent.parent
TRANSLATIONS = ROOT / "lens" / "translations"
LANGUAGES = ("en", "nl")
# The same keywords as bin/i18n passes to `pybabel extract`.
KEYWORDS = {
    **DEFAULT_KEYWORDS,
    "_l": None,
    "lazy_gettext": None,
    "lazy_ngettext": (1, 2),
    "lazy_pgettext": ((1, "c"), 2),
}
# A %-placeholder as gettext/Flask-Babel fill it in: %(name)s, %(count)d, %s, %%.
PLACEHOLDER = re.compile(
    r"%(?:\((\w+)\))?[-#0 +]*(?:\d+|\*)?(?:\.(?:\d+|\*))?([diouxXeEfFgGcrsa%])"
)
# A str.format field as the invitation texts use them: {technician}, {pin}; "{{" is literal.
FIELD = re.compile(r"(?<!\{)\{(\w*)\}(?!\})")
NO_ID = object()


def po_path(lang: str) -> Path:
    return TRANSLATIONS / lang / "LC_MESSAGES" / "messages.po"


def read_catalog(lang: str) -> Catalog:
    path = po_path(lang)
    assert path.is_file(), f"{path} is missing: run bin/i18n"
    with path.open("rb") as fh:
        return read_po(fh, locale=lang)


def compile_catalog(po: Path) -> None:
    """What `pybabel compile` does for one catalog, written atomically."""
    with po.open("rb") as fh:
        catalog = read_po(fh, locale=po.parent.parent.name)
    mo = po.with_suffix(".mo")
    fd, tmp = tempfile.mkstemp(dir=mo.parent, prefix=".messages-", suffix=".mo")
    try:
        with os.fdopen(fd, "wb") as fh:
            write_mo(fh, catalog, use_fuzzy=False)
        os.chmod(tmp, 0o644)
        os.replace(tmp, mo)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@pytest.fixture(scope="session", autouse=True)
def compiled_catalogs() -> None:
    """The .mo files are not in git: compile any missing or older than its .po."""
    for po in sorted(TRANSLATIONS.glob("*/LC_MESSAGES/messages.po")):
        mo = po.with_suffix(".mo")
        if not mo.exists() or mo.stat().st_mtime < po.stat().st_mtime:
            compile_catalog(po)


def extracted_messages() -> dict[tuple[str | None, str], list[str]]:
    """Every marked string in the sources now, keyed (context, msgid), with where it is."""
    with (ROOT / "babel.cfg").open() as fh:
        method_map, options_map = parse_mapping_cfg(fh, "babel.cfg")
    found: dict[tuple[str | None, str], list[str]] = {}
    for filename, lineno, message, _comments, context in extract_from_dir(
        ROOT, method_map, options_map, keywords=KEYWORDS
    ):
        msgid = message[0] if isinstance(message, tuple) else message
        if msgid:
            found.setdefault((context, msgid), []).append(f"{filename}:{lineno}")
    return found


def strings_of(message: Message) -> list[str]:
    return list(message.string) if isinstance(message.string, (tuple, list)) else [message.string]


def placeholders(text: str) -> Counter:
    """The %-placeholders and {fields} of a text, counted: a translation must keep them."""
    found = Counter(PLACEHOLDER.findall(text))
    found.update(("{" + name + "}", "") for name in FIELD.findall(text))
    return found


def test_babel_cfg_extracts_lens_and_templates_only():
    found = extracted_messages()
    files = {where.rsplit(":", 1)[0] for places in found.values() for where in places}
    assert any(f.startswith("templates/") for f in files)
    assert any(f.startswith("lens/") for f in files)
    assert not [f for f in files if not f.startswith(("lens/", "templates/"))]
    assert not [f for f in files if f.startswith("lens/media/")]


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_marked_string_is_translated(lang):
    """Fresh extraction against the catalog: missing, empty or fuzzy entries fail."""
    catalog = read_catalog(lang)
    assert not catalog.fuzzy, (
        f"{po_path(lang)}: the header is marked fuzzy, so `pybabel compile` skips the whole "
        "catalog; remove '#, fuzzy' above msgid \"\""
    )
    problems = []
    for (context, msgid), places in sorted(
        extracted_messages().items(), key=lambda item: item[1][0]
    ):
        message = catalog.get(msgid, context)
        where = ", ".join(places)
        if message is None:
            problems.append(f"missing: {msgid!r} ({where})")
        elif message.fuzzy:
            problems.append(f"fuzzy:   {msgid!r} ({where})")
        elif not all(strings_of(message)):
            problems.append(f"empty:   {msgid!r} ({where})")
    assert not problems, (
        f"{len(problems)} untranslated string(s) for {lang!r}; run bin/i18n and translate them "
        f"in {po_path(lang).relative_to(ROOT)}:\n" + "\n".join(problems)
    )


@pytest.mark.parametrize("lang", LANGUAGES)
def test_translations_keep_the_placeholders(lang):
    problems = []
    for message in read_catalog(lang):
        if not message.id or not any(strings_of(message)):
            continue
        if isinstance(message.id, (tuple, list)):
            singular, plural = message.id[0], message.id[-1]
            allowed = set(placeholders(singular)) | set(placeholders(plural))
            forms = strings_of(message)
            for form in forms[:-1]:  # a singular form may leave the count out
                if not set(placeholders(form)) <= allowed:
                    problems.append(f"{singular!r} → {form!r}")
            if placeholders(forms[-1]) != placeholders(plural):
                problems.append(f"{plural!r} → {forms[-1]!r}")
        elif placeholders(message.string) != placeholders(message.id):
            problems.append(f"{message.id!r} → {message.string!r}")
    assert not problems, f"placeholders differ in {lang!r}:\n" + "\n".join(problems)


def test_dutch_uses_the_product_words():
    """The words of the Dutch Rescue Lens manual, not a translator's synonyms."""
    catalog = read_catalog("nl")
    expected = {
        "Start": "Starten",
        "End session": "Sessie beëindigen",
        "Accept": "Accepteren",
        "Skip": "Overslaan",
        "OK": "OK",
        "PIN": "Pincode",
        "Create PIN": "Pincode maken",
        "New session": "Nieuwe sessie",
        "Name": "Naam",
        "Session ID": "Sessie-ID",
        "Status": "Status",
        "Time": "Tijd",
        "Channel": "Kanaal",
        "E-mail": "E-mail",
        "Password": "Wachtwoord",
        "Log in": "Aanmelden",
        "Licence agreement": "Licentieovereenkomst",
        "Technician Console": "Technician Console",
        "Web Console": "Web Console",
        "Customer connected": "Klant verbonden",
        "Send SMS": "Sms verzenden",
        "Send email": "E-mail verzenden",
        "Copy link": "Link kopiëren",
        "To": "Aan",
    }
    actual = {}
    for msgid in expected:
        message = catalog.get(msgid)
        actual[msgid] = message.string if message is not None else NO_ID
    wrong = {k: actual[k] for k in expected if actual[k] is not NO_ID and actual[k] != expected[k]}
    assert not wrong, wrong


@pytest.mark.parametrize(
    ("lang", "path", "words", "not_words"),
    [
        (
            "nl",
            "/",
            ["Pincode", "Verbinden", "Deelnemen aan een supportsessie", "Taal"],
            ["Connect", "Join a support session"],
        ),
        (
            "en",
            "/",
            ["PIN", "Connect", "Join a support session", "Language"],
            ["Pincode", "Verbinden"],
        ),
        ("nl", "/login", ["E-mail", "Wachtwoord", "Aanmelden"], ["Password", "Log in"]),
        ("en", "/login", ["E-mail", "Password", "Log in"], ["Wachtwoord", "Aanmelden"]),
    ],
)
def test_pages_follow_the_browser_language(client, lang, path, words, not_words):
    response = client.get(path, headers={"Accept-Language": lang})
    assert response.status_code == 200
    html = response.text
    assert f'<html lang="{lang}">' in html
    for word in words:
        assert word in html, f"{word!r} missing from {path} in {lang}"
    for word in not_words:
        assert word not in html, f"{word!r} on {path} in {lang}"


def test_best_match_of_a_regional_browser_language(client):
    html = client.get("/login", headers={"Accept-Language": "nl-BE,nl;q=0.9,en;q=0.5"}).text
    assert "Wachtwoord" in html


def test_language_switch_sets_the_cookie_and_goes_on(client):
    response = client.get(
        "/lang/nl", query_string={"next": "/login"}, headers={"Accept-Language": "en"}
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/login"
    assert "lens_lang=nl" in response.headers.get("Set-Cookie", "")

    html = client.get("/login", headers={"Accept-Language": "en"}).text
    assert '<html lang="nl">' in html
    assert "Wachtwoord" in html and "Aanmelden" in html

    client.get("/lang/en", query_string={"next": "/login"})
    html = client.get("/login", headers={"Accept-Language": "nl"}).text
    assert "Password" in html and "Wachtwoord" not in html


def test_unknown_language_sets_no_cookie(client):
    response = client.get("/lang/xx", query_string={"next": "/login"})
    assert response.status_code == 302
    assert "lens_lang" not in response.headers.get("Set-Cookie", "")
    assert "Password" in client.get("/login", headers={"Accept-Language": "en"}).text


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example",
        "https://evil.example",
        "https://evil.example/login",
        "/\\evil.example",
        "\\\\evil.example",
        "javascript:alert(1)",
        "evil.example",
    ],
)
def test_language_switch_never_leaves_the_site(client, target):
    response = client.get("/lang/nl", query_string={"next": target})
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    assert "lens_lang=nl" in response.headers.get("Set-Cookie", "")


def test_the_default_custom_field_is_shown_translated_and_stored_by_its_setting(app, console):
    console.client.set_cookie("lens_lang", "nl")
    dialog = console.client.get("/console/sessions/new", headers={"HX-Request": "true"}).text
    page = console.client.get("/console/").text
    assert "Aangepast veld" in dialog and "Aangepast veld" in page
    assert "Custom field" not in dialog + page

    console.create_session("Jan Klant", custom_0="T-77")
    with app.app_context():
        session = db.session.scalars(select(LensSession)).one()
        assert session.custom_fields == {"Custom field": "T-77"}  # not the reader's language
