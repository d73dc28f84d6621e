"""QR codes of join links, for a customer who reads the technician's screen with the phone."""

import html

import segno


def qr_svg(url: str, *, label: str = "QR code of the join link", scale: int = 4) -> str:
    """Return an inline <svg> QR code of url, with role="img" and label as its accessible name."""
    code = segno.make(url, error="m", micro=False)
    svg = code.svg_inline(scale=scale, border=2, title=label, svgclass="lens-qr")
    attributes = f'<svg role="img" aria-label="{html.escape(label, quote=True)}"'
    return svg.replace("<svg", attributes, 1)
