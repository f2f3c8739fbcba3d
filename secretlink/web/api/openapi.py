"""The API's own description."""

from importlib.resources import files

from flask import Blueprint, current_app

from secretlink.web.api.common import PREFIX

bp = Blueprint("openapi", __name__, url_prefix=PREFIX)


@bp.get("/openapi.json")
def openapi_document():
    """The OpenAPI 3.1 document of this API (secretlink/openapi.json, served as it is)."""
    document = files("secretlink").joinpath("openapi.json").read_bytes()
    return current_app.response_class(document, mimetype="application/json")
