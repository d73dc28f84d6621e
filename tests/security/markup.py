"""What a Content-Security-Policy without 'unsafe-inline' or 'unsafe-eval' would refuse in
a page: inline scripts, inline event handlers, javascript: URLs, inline styles, and the
htmx attributes that need eval."""

from __future__ import annotations

from html.parser import HTMLParser

URL_ATTRIBUTES = {"href", "src", "action", "formaction", "xlink:href"}
# htmx evaluates these as JavaScript (with eval / new Function), which the policy refuses
HTMX_SCRIPT_VALUES = {"hx-vals", "hx-vars", "hx-headers", "data-hx-vals", "data-hx-headers"}


class InlineCode(HTMLParser):
    """Collects every piece of inline code in a page (or a template's source)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._script: str | None = None  # the open <script>'s text, None outside one

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._check(tag, attrs)
        if tag == "script":
            if not dict(attrs).get("src"):
                self.found.append("<script> without src (inline script)")
            self._script = ""
        if tag == "style":
            self.found.append("<style> element (inline style)")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._check(tag, attrs)

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self._script += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._script is not None:
            if self._script.strip():
                self.found.append("<script> with a body (inline script)")
            self._script = None

    def _check(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            value = (value or "").strip()
            if name.startswith("on"):
                self.found.append(f"<{tag} {name}=...> (inline event handler)")
            elif name == "style":
                self.found.append(f"<{tag} style=...> (inline style)")
            elif name.startswith(("hx-on", "data-hx-on")):
                self.found.append(f"<{tag} {name}=...> (htmx handler, needs eval)")
            elif name in URL_ATTRIBUTES and value.lower().startswith("javascript:"):
                self.found.append(f"<{tag} {name}=javascript:...>")
            elif name in HTMX_SCRIPT_VALUES and value.lower().startswith(("js:", "javascript:")):
                self.found.append(f"<{tag} {name}=js:...> (htmx, needs eval)")
            elif name in ("hx-trigger", "data-hx-trigger") and "[" in value:
                self.found.append(f"<{tag} {name} with an event filter> (htmx, needs eval)")


def inline_code(html: str) -> list[str]:
    """Every inline script, handler, style and eval-needing attribute in html."""
    parser = InlineCode()
    parser.feed(html)
    parser.close()
    return parser.found
