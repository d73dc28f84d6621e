"""No template or script needs what the Content-Security-Policy refuses: inline scripts,
inline event handlers, inline styles, javascript: URLs, eval (lens.security.headers)."""

from __future__ import annotations

import re

import pytest

from lens import ROOT
from tests.security.markup import inline_code

TEMPLATES = sorted((ROOT / "templates").rglob("*.html"))
SCRIPTS = sorted((ROOT / "static" / "js").glob("*.js"))
VENDORED = sorted((ROOT / "static" / "vendor").glob("*.js"))

JINJA = re.compile(r"{{.*?}}|{%.*?%}|{#.*?#}", re.S)
# what a script may not do under the policy: run strings as code, set inline styles or handlers
EVAL = re.compile(
    r"\beval\s*\(|\bnew\s+Function\b|\bset(?:Timeout|Interval)\s*\(\s*['\"`]"
    r"|setAttribute\(\s*['\"](?:style|on\w+)['\"]|\.cssText\s*=|WebAssembly\."
)


def source_markup(template: str) -> str:
    """A template's HTML with Jinja's expressions, tags and comments taken out."""
    return JINJA.sub(lambda m: "x" if m.group(0).startswith("{{") else "", template)


def test_there_are_templates_and_scripts():
    assert len(TEMPLATES) >= 40 and len(SCRIPTS) >= 10


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_template_has_inline_code(path):
    assert inline_code(source_markup(path.read_text())) == []


@pytest.mark.parametrize("path", SCRIPTS + VENDORED, ids=lambda p: p.name)
def test_no_script_evaluates_strings_or_sets_inline_styles(path):
    text = path.read_text()
    if path.name.startswith("htmx-"):
        # htmx has eval paths (hx-on, js: values, event filters) and the indicator <style>;
        # the pages switch them off in their htmx-config (layouts/base.html)
        return
    assert EVAL.findall(text) == []


def test_the_pages_switch_htmx_eval_and_inline_styles_off():
    import json

    base = (ROOT / "templates" / "layouts" / "base.html").read_text()
    config = json.loads(re.search(r'name="htmx-config" content=\'([^\']+)\'', base).group(1))
    assert config["includeIndicatorStyles"] is False
    assert config["allowEval"] is False
    assert config["allowScriptTags"] is False
    assert "style" not in config["attributesToSettle"]  # htmx would setAttribute("style")
    css = (ROOT / "static" / "css" / "lens.css").read_text()
    assert ".htmx-request .htmx-indicator" in css  # the indicator rules htmx no longer adds


@pytest.mark.parametrize(
    "markup",
    [
        "<script>alert(1)</script>",
        '<button onclick="go()">Go</button>',
        '<a href=" JavaScript:go()">Go</a>',
        '<div style="color: red">',
        "<style>p { color: red }</style>",
        '<button hx-on:click="go()">',
        "<div hx-vals='js:{a: 1}'>",
        "<div hx-trigger=\"keyup[key=='Enter']\">",
        '<img src="x.png" onerror="go()"/>',
    ],
)
def test_the_check_finds_inline_code(markup):
    assert inline_code(markup)


def test_the_check_passes_scripts_by_address_and_data_attributes():
    markup = (
        '<script src="/static/js/console.js" defer></script>'
        '<button data-close-dialog data-online="x" hx-post="/x" hx-trigger="click">Close</button>'
        '<svg><path stroke="#000" d="M0 0"/></svg>'
    )
    assert inline_code(markup) == []
    assert inline_code(source_markup('<p{% if x %} onclick="y"{% endif %}>')) != []
