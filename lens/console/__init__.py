"""The two consoles: Technician Console and Web Console."""
