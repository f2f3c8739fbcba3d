"""The HTML pages: home (create an inbox), inbox (read), the sender page, and the
sender's side of a conversation (reply)."""

from dataclasses import replace

from flask import Blueprint, render_template
from flask_babel import gettext

from secretlink.web.api.common import inbox_key, storage
from secretlink.web.api.inboxes import MAX_PROMPT_CHARS
from secretlink.web.api.settings import require_settings
from secretlink.web.errors import ApiError

bp = Blueprint("pages", __name__)


@bp.get("/")
def home():
    return render_template("home.html", max_prompt=MAX_PROMPT_CHARS)


@bp.get("/inbox")
def inbox():
    return render_template("inbox.html")


@bp.get("/reply")
def reply():
    # A static page: the reply link's secret is in its fragment, which browsers never
    # send; the page reads it and moves it into this browser's storage (SPEC 4.6).
    return render_template("reply.html")


@bp.get("/to/<public_key>")
def send(public_key: str):
    try:
        public_key = inbox_key(public_key)
    except ApiError:
        raise ApiError(
            400,
            "bad_link",
            gettext(
                "This link is damaged: the key in it is not a valid secretlink key. "
                "Ask for the link again and copy it whole."
            ),
            page_title=gettext("Damaged link"),
        ) from None
    found = storage().get_inbox(public_key)
    if found is None:
        raise ApiError(
            404,
            "unknown_inbox",
            gettext(
                "There is no inbox for this link on this server. It may have been "
                "deleted, or the link belongs to another server."
            ),
            page_title=gettext("Unknown inbox"),
        )
    # The page is the same whatever the inbox's state (so `secretlink verify` can
    # compare it), except that a disabled inbox's prompt is not shown: send.js asks
    # the API for the state and shows a notice instead of the form.
    if require_settings(public_key).disabled:
        found = replace(found, prompt="")  # the operator took the prompt down
    return render_template("send.html", inbox=found)
