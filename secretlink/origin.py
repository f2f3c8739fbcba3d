"""The service's public origin: configured, or read from the request."""

from flask import current_app, request

from secretlink.settings import canonical_origin


def request_origin() -> str:
    """The origin clients see, which the proof of possession is bound to."""
    configured = current_app.config["SECRETLINK"].base_url
    return configured or canonical_origin(request.host_url)


def link_for(public_key: str) -> str:
    return f"{request_origin()}/to/{public_key}"
