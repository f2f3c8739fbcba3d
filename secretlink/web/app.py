"""The Flask application factory: wires settings, storage, auth, API and pages together."""

from importlib.resources import files
from pathlib import Path

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from secretlink.crypto.envelope import MAX_ENVELOPE
from secretlink.ops import logs
from secretlink.settings import Settings
from secretlink.store import migrate
from secretlink.store.instance import open_storage
from secretlink.web import (
    api,
    assets,
    errors,
    fast_path,
    health,
    i18n,
    limits,
    nojs,
    onion,
    origin,
    pages,
    security,
    service_worker,
)
from secretlink.web.auth import Authenticator
from secretlink.web.pow import ProofOfWork

# Templates and static files are installed as the package `secretlink.webui` (the
# webui/ folder of the repository), so the app finds them in a checkout, a wheel
# and the zipapp alike.
WEBUI = Path(str(files("secretlink.webui")))
# Room for the largest envelope in base64url plus the JSON around it.
MAX_REQUEST_BYTES = MAX_ENVELOPE * 4 // 3 + 1024


def default_instance_path() -> Path:
    """Flask's instance folder for this package, the default data folder."""
    return Path(Flask("secretlink", instance_relative_config=True).instance_path)


def create_app(settings: Settings | None = None) -> Flask:
    app = Flask(
        "secretlink",  # as default_instance_path(): one instance folder for every entry
        template_folder=str(WEBUI / "templates"),
        static_folder=str(WEBUI / "static"),
        instance_relative_config=True,
    )
    settings = (settings or Settings.from_env()).with_data_dir(Path(app.instance_path))
    app.config.update(
        SECRETLINK=settings,
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES,
    )
    app.logger.setLevel(settings.log_level)
    logs.install_filters()

    storage, notifier = open_storage(settings)
    if settings.auto_upgrade:
        storage.create_schema()
    else:
        # `serve` checks in its master before any worker starts; this covers every
        # other way of starting the app (flask run, another WSGI server), so that it
        # never runs against a schema this release does not know.
        migrate.require_current(settings.database_url)
    app.extensions["secretlink.storage"] = storage
    app.extensions["secretlink.auth"] = Authenticator(
        settings.secret_key, storage, settings.challenge_ttl, settings.token_ttl
    )
    app.extensions["secretlink.pow"] = ProofOfWork(
        settings.secret_key,
        storage,
        settings.pow_difficulty,
        redis_url=settings.redis_url,
        fresh_seconds=settings.pow_fresh_seconds,
    )
    app.extensions["secretlink.notify"] = notifier

    origin.install(app)  # before the routes: it sets how the URL map treats slashes
    for blueprint in api.BLUEPRINTS:
        app.register_blueprint(blueprint)
    app.register_blueprint(pages.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(service_worker.bp)
    errors.register_error_handlers(app)
    i18n.install(app)
    security.install(app)
    onion.install(app)
    nojs.install(app)
    assets.install(app)
    limits.install(app)
    fast_path.install(app)  # inside ProxyFix: it sees what the app would
    if settings.trusted_proxy_hops:
        hops = settings.trusted_proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)
    return app
