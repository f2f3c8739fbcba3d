"""The notifications service worker, served at /notify-sw.js.

A service worker controls the pages under the folder it is served from, so this one
is served from the root (its bytes are the committed bundle static/build/notify-sw.js,
which `secretlink verify` compares). Its own CSP allows it nothing: it only shows the
text a push carries.
"""

from flask import Blueprint, current_app, send_from_directory

bp = Blueprint("service_worker", __name__)

WORKER_CSP = "default-src 'none'; base-uri 'none'; require-trusted-types-for 'script'"


@bp.get("/notify-sw.js")
def notify_service_worker():
    response = send_from_directory(
        current_app.static_folder or "", "build/notify-sw.js", mimetype="text/javascript"
    )
    response.headers["Content-Security-Policy"] = WORKER_CSP
    # The browser checks for a new version on each navigation; never a stale copy.
    response.headers["Cache-Control"] = "no-cache"
    return response
