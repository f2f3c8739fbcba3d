"""HTML pages: what they show, what they refuse, and the headers on every response."""

import base64
import hashlib
import re
from dataclasses import replace

import pytest
from conftest import register

from secretlink.crypto import b64encode, generate_keypair, seal
from secretlink.web.security import CONTENT_SECURITY_POLICY


def test_home_offers_to_create_an_inbox(client):
    page = client.get("/").get_data(as_text=True)
    assert "Create inbox" in page and "Your link" in page


def test_sender_page_shows_prompt_as_text(client, keypair):
    register(client, keypair, prompt='<script>alert("x")</script> & <b>hi</b>')
    page = client.get(f"/to/{keypair.public_key_text}").get_data(as_text=True)
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;b&gt;hi&lt;/b&gt;" in page
    assert "<script>alert" not in page
    assert 'for="message">Message<' in page and ">Send<" in page
    assert 'role="status"' in page


@pytest.mark.parametrize("key", ["short", "A" * 44, b64encode(bytes(32)), "%2B" * 43])
def test_damaged_link_is_a_400_page(client, key):
    response = client.get(f"/to/{key}")
    assert response.status_code == 400
    assert "damaged" in response.get_data(as_text=True)
    assert response.mimetype == "text/html"


def test_unknown_inbox_is_a_404_page(client):
    response = client.get(f"/to/{generate_keypair().public_key_text}")
    assert response.status_code == 404
    assert "no inbox for this link" in response.get_data(as_text=True)


def test_unknown_page_is_a_404_page(client):
    response = client.get("/nothing-here")
    assert response.status_code == 404 and response.mimetype == "text/html"


def assert_security_headers(response, cacheable: bool = False) -> None:
    headers = response.headers
    policy = headers["Content-Security-Policy"]
    assert policy == CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in policy.split("; ")
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
    features = headers["Permissions-Policy"].replace(" ", "").split(",")
    for feature in ("camera", "microphone", "geolocation", "payment", "usb"):
        assert f"{feature}=()" in features
    if not cacheable:
        assert headers["Cache-Control"] == "no-store"
    assert "Strict-Transport-Security" not in headers  # plain HTTP here


@pytest.mark.parametrize("path", ["/", "/inbox", "/reply", "/api/v1/nope", "/static/style.css"])
def test_security_headers_on_every_response(client, path):
    assert_security_headers(client.get(path), cacheable=path.startswith("/static/"))


def post_message(client, keypair, ciphertext=None):
    ciphertext = ciphertext or b64encode(seal("hello", keypair.public_key))
    return client.post(
        f"/api/v1/inboxes/{keypair.public_key_text}/messages", json={"ciphertext": ciphertext}
    )


def test_security_headers_on_the_sender_page_sending_and_errors(client, keypair):
    register(client, keypair)
    answers = {
        "sender page": (client.get(f"/to/{keypair.public_key_text}"), 200),
        "message sent": (post_message(client, keypair), 201),
        "bad envelope": (post_message(client, keypair, ciphertext="AAAA"), 400),
        "unknown inbox": (post_message(client, generate_keypair()), 404),
    }
    for name, (response, status) in answers.items():
        assert response.status_code == status, name
        if status >= 400:
            assert response.is_json and response.get_json()["code"], name
        assert_security_headers(response)


def test_security_headers_on_a_rate_limited_answer(settings, make_app, keypair):
    app = make_app(replace(settings, rate_limits_enabled=True, rate_limit_client="1/minute"))
    client = app.test_client()
    register(client, keypair)
    assert post_message(client, keypair).status_code == 201
    refused = post_message(client, keypair)
    assert refused.status_code == 429 and refused.get_json()["code"] == "rate_limited"
    assert_security_headers(refused)


def test_csp_allows_no_inline_code_eval_wasm_or_other_origins():
    policy = CONTENT_SECURITY_POLICY
    for forbidden in ("unsafe-inline", "unsafe-eval", "wasm-unsafe-eval", "http:", "https:", "*"):
        assert forbidden not in policy
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy


def test_hsts_only_over_https(client):
    headers = client.get("/", base_url="https://localhost").headers
    assert headers["Strict-Transport-Security"].startswith("max-age=")


def test_pages_and_api_are_not_cached(client):
    assert client.get("/inbox").headers["Cache-Control"] == "no-store"
    assert client.get("/api/v1/nope").headers["Cache-Control"] == "no-store"


@pytest.fixture(params=["/", "/inbox", "/reply", "sender"])
def page(request, client, keypair) -> str:
    """A page's HTML: home, inbox, and the sender page of a registered inbox."""
    path = request.param
    if path == "sender":
        register(client, keypair)
        path = f"/to/{keypair.public_key_text}"
    response = client.get(path)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def asset_tags(page: str) -> list[str]:
    return re.findall(r"<script\b[^>]*>|<link\b[^>]*stylesheet[^>]*>", page)


def sri(body: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(body).digest()).decode()


def test_pages_load_only_same_origin_assets_with_integrity(page):
    tags = asset_tags(page)
    assert any(t.startswith("<script") for t in tags) and any(t.startswith("<link") for t in tags)
    for tag in tags:
        assert re.search(r'(?:src|href)="/static/', tag), tag
        assert 'integrity="sha384-' in tag, tag
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page), "inline script"
    assert " style=" not in page and "<style" not in page


def test_integrity_hash_matches_the_served_file(client, page):
    for tag in asset_tags(page):
        url = re.search(r'(?:src|href)="([^"]+)"', tag).group(1)
        integrity = re.search(r'integrity="([^"]+)"', tag).group(1)
        served = client.get(url)
        assert served.status_code == 200, url
        assert integrity == sri(served.data), url


def assert_worker_named_by_integrity(client, tag: str, worker: str) -> None:
    """`tag` (an element's opening tag) names the bundle `worker` and its integrity
    hash, and the hash is the served file's."""
    url = re.search(rf'data-{worker}="([^"]+)"', tag).group(1)
    integrity = re.search(rf'data-{worker}-integrity="([^"]+)"', tag).group(1)
    assert url.startswith(f"/static/build/{worker}.js")
    served = client.get(url)
    assert served.status_code == 200
    assert integrity == sri(served.data)


@pytest.mark.parametrize("which", ["sender", "start"])
def test_pages_that_solve_puzzles_name_their_worker_by_integrity(client, keypair, which):
    """The sender page (a puzzle per message) and the start page (one to create an inbox)."""
    register(client, keypair)
    path, form_id = {
        "sender": (f"/to/{keypair.public_key_text}", "send-form"),
        "start": ("/", "create-form"),
    }[which]
    page = client.get(path).get_data(as_text=True)
    form = re.search(rf'<form\b[^>]*id="{form_id}"[^>]*>', page).group(0)
    assert_worker_named_by_integrity(client, form, "pow-worker")


def test_the_sender_page_names_its_encryption_worker_by_integrity(client, keypair):
    """Files are sealed by seal-worker.js, started only from bytes with this hash."""
    register(client, keypair)
    page = client.get(f"/to/{keypair.public_key_text}").get_data(as_text=True)
    holder = re.search(r'<div id="attach"[^>]*>', page).group(0)
    assert_worker_named_by_integrity(client, holder, "seal-worker")


def test_reply_page_is_static_and_loads_its_own_script(client):
    """The reply link's secret is in the fragment: the page itself holds nothing of it."""
    page = client.get("/reply").get_data(as_text=True)
    assert "Your conversation" in page and "reply key file" in page
    assert re.search(r'<script type="module" src="/static/build/reply\.js\?v=', page)
    assert 'data-pow-worker="/static/build/pow-worker.js' in page
    assert client.get("/reply/").status_code == 404


def test_sender_page_offers_replies_in_a_container_that_can_be_hidden(client, keypair):
    register(client, keypair)
    page = client.get(f"/to/{keypair.public_key_text}").get_data(as_text=True)
    option = re.search(r'<div class="reply-option" data-needs="replies">(.*?)</div>', page, re.S)
    assert option and "Let the recipient reply" in option.group(1)
    assert 'id="inbox-safety-words"' in page
