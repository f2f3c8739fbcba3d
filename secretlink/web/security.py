"""Response headers that make the browser enforce what the pages promise.

The CSP allows only same-origin scripts and styles (no inline code, no eval, no
WebAssembly: every page runs on pure-JS crypto) and requires Trusted Types, so
no page script can write HTML from a string even by mistake; the policy
`secretlink-worker` admits only the pages' workers (proof of work, key backups),
each started from a blob of bytes that passed an integrity check.
"""

from flask import Flask, Response, request

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        # The pages start their workers (proof of work, key backups) from blobs made
        # from bytes fetched with an integrity check (browsers check none for a worker URL).
        # 'self': the notifications service worker (/notify-sw.js), which cannot be a
        # blob; registering it takes the second Trusted Types policy below.
        "worker-src blob: 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        # One policy for the pages' verified worker blobs (webui/src/verified-worker.js).
        "trusted-types secretlink-worker secretlink-service-worker",
    ]
)

HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    # Links carry public keys; no page should tell another site where it came from.
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=(), "
    "interest-cohort=()",
}


def add_security_headers(response: Response) -> Response:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if request.is_secure:
        response.headers.setdefault("Strict-Transport-Security", "max-age=63072000")
    if not request.path.startswith("/static/"):
        # Pages and API answers may hold inbox data: keep them out of every cache.
        response.headers["Cache-Control"] = "no-store"
    return response


def install(app: Flask) -> None:
    app.after_request(add_security_headers)
