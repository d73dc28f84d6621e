"""Settings, read in one place: environment variables over safe defaults."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# The custom field's label when LENS_CUSTOM_FIELDS is unset (lens.i18n shows it translated).
DEFAULT_CUSTOM_FIELD = "Custom field"


def _read_or_create_secret(path: Path) -> str:
    """Return the secret stored at path, creating it (mode 0600) on first use."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process (the sidecar) made it first
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return value


class SettingsError(RuntimeError):
    """Settings this process must not start with; the message says what to set."""


# Every host of a multi-host site must agree on these (docs/scale-out.md): a log-in cookie
# signed on one host is checked on another, the sidecars' API is called by every web host.
SHARED_SECRETS = ("SECRET_KEY", "LENS_MEDIA_SECRET")


def multi_host(env: Mapping[str, str]) -> bool:
    """A site on a database server (not one host's SQLite file) may have several hosts."""
    url = env.get("DATABASE_URL", "")
    return bool(url) and not url.startswith("sqlite")


def check_shared_settings(env: Mapping[str, str]) -> None:
    """Refuse to start a multi-host site's process without the settings all hosts share.

    (Generated per instance folder, they would differ from host to host: log-ins would
    not carry over and web hosts could not call the sidecars.)"""
    if not multi_host(env):
        return
    missing = [name for name in SHARED_SECRETS if not env.get(name)]
    ice = env.get("LENS_ICE_SERVERS", "")
    if "turn:" in ice and '"credential"' not in ice and not env.get("LENS_TURN_SECRET"):
        missing.append("LENS_TURN_SECRET")
    if missing:
        raise SettingsError(
            f"DATABASE_URL names a database server, so this may be one of several hosts: "
            f"set {', '.join(missing)} to the same value on every host (docs/scale-out.md). "
            f"Lens does not start with a secret of this host's own."
        )


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise RuntimeError(f"{name} must be a whole number, got {raw!r}") from exc


def _ice_servers(env: Mapping[str, str]) -> list[dict[str, Any]]:
    from lens.network import check_ice_settings

    try:
        servers = json.loads(env.get("LENS_ICE_SERVERS") or "[]")
    except json.JSONDecodeError as exc:
        raise RuntimeError(f"LENS_ICE_SERVERS is not JSON: {exc}") from exc
    check_ice_settings(servers, env.get("LENS_TURN_SECRET", ""))
    return servers


def load_settings(instance_path: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Build the Flask config from the environment and the instance folder."""
    env = os.environ if env is None else env
    check_shared_settings(env)
    instance = Path(instance_path)
    secret_key = env.get("SECRET_KEY") or _read_or_create_secret(instance / "secret_key")
    redis_url = env.get("REDIS_URL", "")
    pin_validity = _int(env, "LENS_PIN_VALIDITY_MINUTES", 20)
    database_url = env.get("DATABASE_URL") or f"sqlite:///{instance / 'lens.db'}"
    settings: dict[str, Any] = {
        "SECRET_KEY": secret_key,
        "SQLALCHEMY_DATABASE_URI": database_url,
        # the engine's options are made from these by lens.database.engine_options
        "LENS_DB_POOL_SIZE": _int(env, "LENS_DB_POOL_SIZE", 10),
        "LENS_DB_MAX_OVERFLOW": _int(env, "LENS_DB_MAX_OVERFLOW", 20),
        "LENS_DB_POOL_TIMEOUT": float(env.get("LENS_DB_POOL_TIMEOUT", "10")),
        # how long a write waits for a busy database before the user is told to try again
        "LENS_DB_BUSY_SECONDS": float(env.get("LENS_DB_BUSY_SECONDS", "15")),
        "REDIS_URL": redis_url,
        # channels and keys of this site in Redis (several sites may share one server)
        "LENS_REDIS_PREFIX": env.get("LENS_REDIS_PREFIX") or "lens:",
        "RATELIMIT_STORAGE_URI": env.get("LENS_RATELIMIT_STORAGE_URI")
        or (redis_url if redis_url else "memory://"),
        "RATELIMIT_HEADERS_ENABLED": True,
        # sites sharing one Redis server count their limits apart
        "RATELIMIT_KEY_PREFIX": env.get("LENS_REDIS_PREFIX") or "lens:",
        # The defaults of settings the Admin Center can change (lens.admin.settings).
        "LENS_PIN_VALIDITY_MINUTES": pin_validity,
        "LENS_CONNECTING_TIMEOUT_MINUTES": _int(
            env, "LENS_CONNECTING_TIMEOUT_MINUTES", pin_validity
        ),
        "LENS_WAITING_TIMEOUT_MINUTES": _int(env, "LENS_WAITING_TIMEOUT_MINUTES", 0),
        "LENS_IDLE_TIMEOUT_MINUTES": _int(env, "LENS_IDLE_TIMEOUT_MINUTES", 0),
        "LENS_RETENTION_DAYS": _int(env, "LENS_RETENTION_DAYS", 0),
        "LENS_COMPANY_NAME": env.get("LENS_COMPANY_NAME", ""),
        "LENS_COMPANY_LOGO_URL": env.get("LENS_COMPANY_LOGO_URL", ""),
        "LENS_EULA_TEXT": env.get("LENS_EULA_TEXT", ""),
        "LENS_EMAIL_SUBJECT": env.get("LENS_EMAIL_SUBJECT", ""),
        "LENS_EMAIL_INTRO": env.get("LENS_EMAIL_INTRO", ""),
        "LENS_LOGIN_RATE_LIMIT": env.get("LENS_LOGIN_RATE_LIMIT", "10 per minute"),
        # per-account back-off (lens.auth.throttle): this many failed log-ins are free, then
        # each one pauses the account's log-in for twice as long as the one before
        "LENS_LOGIN_FREE_FAILURES": _int(env, "LENS_LOGIN_FREE_FAILURES", 5),
        "LENS_LOGIN_BACKOFF_SECONDS": float(env.get("LENS_LOGIN_BACKOFF_SECONDS", "30")),
        "LENS_LOGIN_BACKOFF_MAX_SECONDS": float(env.get("LENS_LOGIN_BACKOFF_MAX_SECONDS", "3600")),
        # how often an idle console socket re-checks that its log-in still holds (the
        # signed_out push closes it at once; this is for a lost push)
        "LENS_LOGIN_RECHECK_SECONDS": float(env.get("LENS_LOGIN_RECHECK_SECONDS", "10")),
        # Guessing PINs (lens.security.guessing, SECURITY.md has the math): past the
        # address's limit a wrong PIN is answered "too many" and a right one still joins;
        # the address's ceiling and the site's budget (look-ups per PIN validity) bound it.
        "LENS_PIN_RATE_LIMIT": env.get("LENS_PIN_RATE_LIMIT", "10 per minute;50 per hour"),
        "LENS_PIN_ADDRESS_CEILING": _int(env, "LENS_PIN_ADDRESS_CEILING", 100),
        "LENS_PIN_GUESS_BUDGET": _int(env, "LENS_PIN_GUESS_BUDGET", 300),
        "LENS_BASE_URL": env.get("LENS_BASE_URL", "").rstrip("/"),
        # pages of other origins allowed to open the sockets (a proxy's public address when
        # it does not pass X-Forwarded-Proto/Host on), comma-separated (lens.security.upgrades)
        "LENS_ALLOWED_ORIGINS": [
            origin.strip()
            for origin in env.get("LENS_ALLOWED_ORIGINS", "").split(",")
            if origin.strip()
        ],
        # the largest request body (413 before it is read, lens.security.sizes)
        "MAX_CONTENT_LENGTH": _int(env, "LENS_MAX_REQUEST_BYTES", 512 * 1024),
        "LENS_PASSWORD_METHOD": env.get("LENS_PASSWORD_METHOD", "scrypt"),
        "LENS_SWEEP_SECONDS": _int(env, "LENS_SWEEP_SECONDS", 30),
        "LENS_CUSTOMER_GONE_MINUTES": _int(env, "LENS_CUSTOMER_GONE_MINUTES", 5),
        # how long a closed phone socket may take to come back (its page reconnects after a
        # jittered back-off) before the technician is told that the customer left
        "LENS_CUSTOMER_GRACE_SECONDS": float(env.get("LENS_CUSTOMER_GRACE_SECONDS", "3")),
        "LENS_START_SWEEPER": env.get("LENS_START_SWEEPER", "0") == "1",
        "LENS_CUSTOM_FIELDS": [
            label.strip()
            for label in env.get("LENS_CUSTOM_FIELDS", DEFAULT_CUSTOM_FIELD).split(",")
            if label.strip()
        ],
        # STUN/TURN for the browsers (and the sidecar); TURN credentials are made per page
        # from LENS_TURN_SECRET (lens.network, docs/deploy.md)
        "LENS_ICE_SERVERS": _ice_servers(env),
        "LENS_TURN_SECRET": env.get("LENS_TURN_SECRET", ""),
        "LENS_TURN_TTL": _int(env, "LENS_TURN_TTL", 21600),
        # proxies in front of Lens whose X-Forwarded-For/-Proto are trusted (lens.network)
        "LENS_TRUSTED_PROXIES": _int(env, "LENS_TRUSTED_PROXIES", 0),
        "LENS_MEDIA_URL": env.get("LENS_MEDIA_URL")
        or f"http://127.0.0.1:{env.get('LENS_MEDIA_PORT', '8765')}",
        "LENS_MEDIA_SECRET": env.get("LENS_MEDIA_SECRET")
        or _read_or_create_secret(instance / "media-secret"),
        "LENS_MEDIA_TIMEOUT": float(env.get("LENS_MEDIA_TIMEOUT", "10")),
        # Where the sidecar writes recordings (it reads the same variable); snapshots go to
        # <instance>/captures.
        "LENS_RECORDINGS_PATH": env.get("LENS_RECORDINGS_PATH")
        or str(Path(env.get("LENS_STORAGE_PATH") or instance) / "recordings"),
        # Snapshots and finished recordings (lens/storage.py): a folder every host shares,
        # or an S3-compatible object store.
        "LENS_STORAGE": env.get("LENS_STORAGE", "folder"),
        "LENS_STORAGE_PATH": env.get("LENS_STORAGE_PATH", ""),
        "LENS_S3_BUCKET": env.get("LENS_S3_BUCKET", ""),
        "LENS_S3_ENDPOINT_URL": env.get("LENS_S3_ENDPOINT_URL", ""),
        "LENS_S3_REGION": env.get("LENS_S3_REGION", ""),
        # A full-resolution photo the phone uploads (lens.captures.photos): its largest file
        # (inside nginx's client_max_body_size, docs/deploy) and picture; a 50-megapixel
        # phone camera's JPEG stays inside both.
        "LENS_PHOTO_MAX_BYTES": _int(env, "LENS_PHOTO_MAX_BYTES", 24 * 1024 * 1024),
        "LENS_PHOTO_MAX_PIXELS": _int(env, "LENS_PHOTO_MAX_PIXELS", 64_000_000),
        "LENS_PHOTO_RATE_LIMIT": env.get("LENS_PHOTO_RATE_LIMIT", "20 per minute"),
        # Flask-Compress, on the customer's pages only (lens.assets says why)
        "COMPRESS_REGISTER": False,
        "COMPRESS_ALGORITHM": ["br", "gzip"],
        "COMPRESS_STREAMS": False,
        "COMPRESS_MIMETYPES": ["text/html", "application/json"],
        # Chat messages and URLs a technician sends with one click, "|" between them.
        # Empty: the built-in ones, in the technician's language (lens.chat.text).
        "LENS_CHAT_PRESETS": [
            preset.strip()
            for preset in env.get("LENS_CHAT_PRESETS", "").split("|")
            if preset.strip()
        ],
        # Invitations (docs/invitations.md): the SMS backend, its text, the e-mail server.
        "LENS_SMS_BACKEND": env.get("LENS_SMS_BACKEND", "log"),
        "LENS_TWILIO_ACCOUNT_SID": env.get("LENS_TWILIO_ACCOUNT_SID", ""),
        "LENS_TWILIO_AUTH_TOKEN": env.get("LENS_TWILIO_AUTH_TOKEN", ""),
        "LENS_TWILIO_FROM": env.get("LENS_TWILIO_FROM", ""),
        "LENS_TWILIO_MESSAGING_SERVICE_SID": env.get("LENS_TWILIO_MESSAGING_SERVICE_SID", ""),
        "LENS_TWILIO_API_BASE_URL": env.get("LENS_TWILIO_API_BASE_URL", ""),
        "LENS_SMS_WEBHOOK_URL": env.get("LENS_SMS_WEBHOOK_URL", ""),
        "LENS_SMS_WEBHOOK_SECRET": env.get("LENS_SMS_WEBHOOK_SECRET", ""),
        "LENS_SMS_TEMPLATE": env.get("LENS_SMS_TEMPLATE", ""),
        "LENS_DEFAULT_PHONE_REGION": env.get("LENS_DEFAULT_PHONE_REGION", "NL"),
        "LENS_INVITATION_TIMEOUT": env.get("LENS_INVITATION_TIMEOUT", "10"),
        "LENS_INVITE_RATE_LIMIT": env.get("LENS_INVITE_RATE_LIMIT", "10 per hour;3 per minute"),
        "MAIL_SERVER": env.get("MAIL_SERVER", "localhost"),
        "MAIL_PORT": _int(env, "MAIL_PORT", 25),
        "MAIL_USE_TLS": env.get("MAIL_USE_TLS", "0") == "1",
        "MAIL_USE_SSL": env.get("MAIL_USE_SSL", "0") == "1",
        "MAIL_USERNAME": env.get("MAIL_USERNAME") or None,
        "MAIL_PASSWORD": env.get("MAIL_PASSWORD") or None,
        "MAIL_DEFAULT_SENDER": env.get("MAIL_DEFAULT_SENDER") or None,
        "MAIL_SUPPRESS_SEND": env.get("MAIL_SUPPRESS_SEND", "0") == "1",
        "BABEL_DEFAULT_LOCALE": "en",
        "LENS_LANGUAGES": ("en", "nl"),
        # Cookies (lens.security.cookies): Secure on HTTPS requests, and on every request
        # with LENS_SECURE_COOKIES=1 (behind a TLS proxy not listed as trusted).
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": env.get("LENS_SECURE_COOKIES", "0") == "1",
        "REMEMBER_COOKIE_SECURE": env.get("LENS_SECURE_COOKIES", "0") == "1",
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        # Strict-Transport-Security on HTTPS responses (lens.security.headers); 0: none
        "LENS_HSTS_SECONDS": _int(env, "LENS_HSTS_SECONDS", 365 * 24 * 3600),
        "WTF_CSRF_TIME_LIMIT": None,
        # Page sockets (lens.sockets): sizes, rates and caps that keep one client from
        # taking the process. Reads are larger than a TLS record (lens.sockets.tls).
        "SOCK_SERVER_OPTIONS": {
            "ping_interval": 25,
            "max_message_size": _int(env, "LENS_SOCKET_MAX_MESSAGE", 64 * 1024),
            "receive_bytes": 64 * 1024,
        },
        "LENS_SOCKET_MESSAGES_PER_SECOND": float(env.get("LENS_SOCKET_MESSAGES_PER_SECOND", "20")),
        "LENS_SOCKET_BURST": float(env.get("LENS_SOCKET_BURST", "60")),
        "LENS_SOCKETS_PER_ADDRESS": _int(env, "LENS_SOCKETS_PER_ADDRESS", 100),
        "LENS_SOCKETS_PER_OWNER": _int(env, "LENS_SOCKETS_PER_OWNER", 20),
        # who may read the web process's /metrics (networks, comma-separated)
        "LENS_METRICS_ALLOW": [
            network.strip()
            for network in env.get("LENS_METRICS_ALLOW", "127.0.0.0/8,::1/128").split(",")
            if network.strip()
        ],
    }
    return settings
