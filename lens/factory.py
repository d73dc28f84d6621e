"""The web process's app factory: settings, extensions, blueprints, error pages, commands."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flask import Flask

from lens import ROOT


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the Flask app: settings, extensions, blueprints, error pages, commands."""
    app = Flask(
        __name__,
        instance_path=os.environ.get("LENS_INSTANCE_PATH") or str(ROOT / "instance"),
        instance_relative_config=True,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)

    from lens.config import load_settings

    app.config.from_mapping(load_settings(app.instance_path))
    if test_config:
        app.config.update(test_config)

    from lens import logs, network  # logging, trusted proxies (issue 11)

    logs.init_app(app)
    network.init_app(app)
    from lens.security import cookies, headers  # issue 12: headers and cookies
    from lens.security import input as security_input

    headers.init_app(app)
    cookies.init_app(app)
    security_input.init_app(app)  # before any route and the CSRF check (issue 12)
    register_extensions(app)
    register_blueprints(app)
    register_errorhandlers(app)
    register_commands(app)
    if app.config.get("LENS_START_SWEEPER"):
        from lens.sidecars.watch import start_recording_watch
        from lens.sweeper import start_sweeper

        start_sweeper(app)
        start_recording_watch(app)
    return app


def register_extensions(app: Flask) -> None:
    from lens import events
    from lens.database import engine_options, tune_sqlite
    from lens.events import publishing
    from lens.extensions import (
        babel,
        compress,
        csrf,
        db,
        limiter,
        login_manager,
        mail,
        migrate,
        sock,
    )
    from lens.i18n import select_locale

    app.config.setdefault(
        "SQLALCHEMY_ENGINE_OPTIONS",
        engine_options(
            app.config["SQLALCHEMY_DATABASE_URI"],
            pool_size=app.config["LENS_DB_POOL_SIZE"],
            max_overflow=app.config["LENS_DB_MAX_OVERFLOW"],
            pool_timeout=app.config["LENS_DB_POOL_TIMEOUT"],
        ),
    )
    db.init_app(app)
    with app.app_context():
        tune_sqlite(db.engine)
    from lens.sockets import SocketLimits
    from lens.sockets.backlog import bounded_reader
    from lens.sockets.tls import TLSAwareSelector

    options = app.config["SOCK_SERVER_OPTIONS"]
    # what a page has not taken yet: a few messages of the largest size (lens.sockets.backlog)
    backlog = max(4 * (options.get("max_message_size") or 0), 256 * 1024)
    app.config["SOCK_SERVER_OPTIONS"] = dict(
        options, selector_class=TLSAwareSelector, thread_class=bounded_reader(backlog)
    )
    app.extensions["lens.socket_limits"] = SocketLimits(
        app.config["LENS_SOCKETS_PER_ADDRESS"], app.config["LENS_SOCKETS_PER_OWNER"]
    )
    migrate.init_app(app, db, directory=str(ROOT / "migrations"), render_as_batch=True)
    from lens.security import sizes, upgrades

    # before the CSRF check and the rate limits: they read the form, these must not
    sizes.init_app(app)
    upgrades.init_app(app)
    csrf.init_app(app)
    limiter.init_app(app)
    babel.init_app(
        app,
        locale_selector=select_locale,
        default_translation_directories=str(ROOT / "lens" / "translations"),
    )
    sock.init_app(app)
    mail.init_app(app)
    from lens import assets

    assets.init_app(app)
    compress.init_app(app)
    login_manager.init_app(app)
    app.extensions["lens.events"] = app.config.get("LENS_EVENT_BUS") or events.make_bus(
        app.config["REDIS_URL"], app.config["LENS_REDIS_PREFIX"]
    )
    publishing.install()

    from lens.storage import storage_from_env

    app.extensions["lens.storage"] = app.config.get("LENS_STORAGE_BACKEND") or storage_from_env(
        app.config, Path(app.instance_path)
    )

    from lens.sidecars import MediaRouter, RedisRegistry, StaticRegistry

    if app.config["REDIS_URL"]:  # sidecars register there (several, pinned per session)
        registry = RedisRegistry(app.config["REDIS_URL"], app.config["LENS_REDIS_PREFIX"])
    else:
        registry = StaticRegistry(app.config["LENS_MEDIA_URL"])
    app.extensions["lens.media"] = app.config.get("LENS_MEDIA_CONTROL") or MediaRouter(
        registry, app.config["LENS_MEDIA_SECRET"], app.config["LENS_MEDIA_TIMEOUT"]
    )
    from lens.sidecars.legs import LegWatch

    # the pages' legs on those sidecars: told to offer again when theirs is gone
    app.extensions["lens.legs"] = LegWatch(
        lambda: getattr(app.extensions["lens.media"], "registry", None)
    )

    from lens.invitations import setup as invitations

    invitations.init_app(app)

    from lens.controls.channel import ControlHandlers

    app.extensions["lens.control_handlers"] = ControlHandlers()
    from lens.chat import setup as chat

    chat.init_app(app)

    from flask_babel import get_locale

    from lens.i18n import field_label

    app.jinja_env.globals["get_locale"] = get_locale
    app.jinja_env.filters["field_label"] = field_label


def register_blueprints(app: Flask) -> None:
    from lens.auth.views import bp as auth_bp
    from lens.captures.views import make_captures_blueprint
    from lens.console.views import make_console_blueprint
    from lens.customer.views import bp as customer_bp
    from lens.features import TECHNICIAN_CONSOLE, WEB_CONSOLE
    from lens.i18n import bp as i18n_bp
    from lens.ops import bp as ops_bp

    app.register_blueprint(auth_bp)
    app.register_blueprint(make_console_blueprint(TECHNICIAN_CONSOLE, "/console"))
    app.register_blueprint(make_console_blueprint(WEB_CONSOLE, "/web"))
    app.register_blueprint(make_captures_blueprint(TECHNICIAN_CONSOLE, "/console"))
    app.register_blueprint(make_captures_blueprint(WEB_CONSOLE, "/web"))
    app.register_blueprint(customer_bp)
    app.register_blueprint(i18n_bp)
    app.register_blueprint(ops_bp)

    from lens.admin import setup as admin

    admin.init_app(app)


def register_errorhandlers(app: Flask) -> None:
    from lens.errors import register

    register(app)


def register_commands(app: Flask) -> None:
    from lens.cli import lens_cli

    app.cli.add_command(lens_cli)
