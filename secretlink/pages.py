"""The HTML pages: home (create an inbox), inbox (read), and the sender page."""

from flask import Blueprint, render_template

from secretlink.api import MAX_PROMPT_CHARS, inbox_key, storage
from secretlink.errors import ApiError

bp = Blueprint("pages", __name__)


@bp.get("/")
def home():
    return render_template("home.html", max_prompt=MAX_PROMPT_CHARS)


@bp.get("/inbox")
def inbox():
    return render_template("inbox.html")


@bp.get("/to/<public_key>")
def send(public_key: str):
    try:
        public_key = inbox_key(public_key)
    except ApiError:
        raise ApiError(
            400,
            "bad_link",
            "This link is damaged: the key in it is not a valid secretlink key. "
            "Ask for the link again and copy it whole.",
        ) from None
    found = storage().get_inbox(public_key)
    if found is None:
        raise ApiError(
            404,
            "unknown_inbox",
            "There is no inbox for this link on this server. It may have been "
            "deleted, or the link belongs to another server.",
        )
    return render_template("send.html", inbox=found)
