"""Proof of possession: a single-use challenge, answered for a short-lived token
(crypto/SPEC.md section 7)."""

from flask import Blueprint, jsonify

from secretlink.web.api.common import PREFIX, authenticator, inbox_key, json_body, string_field
from secretlink.web.origin import request_origin

bp = Blueprint("auth", __name__, url_prefix=PREFIX)


@bp.post("/auth/challenge")
def create_challenge():
    public_key = inbox_key(string_field(json_body(), "public_key"))
    return jsonify(authenticator().issue_challenge(public_key))


@bp.post("/auth/token")
def create_token():
    data = json_body()
    public_key, token = authenticator().answer_challenge(
        string_field(data, "challenge"), string_field(data, "proof"), request_origin()
    )
    return jsonify(token=token, public_key=public_key, expires_in=authenticator().token_ttl)
