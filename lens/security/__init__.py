"""Security on the open internet: log-in throttling and second factor, revocation, origins,
sizes and rate limits, headers (see SECURITY.md)."""
