"""HTML pages: what they show, what they refuse, and the headers on every response."""

import re

import pytest
from conftest import register

from secretlink.crypto import b64encode, generate_keypair
from secretlink.security import CONTENT_SECURITY_POLICY


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


@pytest.mark.parametrize("path", ["/", "/inbox", "/api/v1/nope", "/static/style.css"])
def test_security_headers_on_every_response(client, path):
    headers = client.get(path).headers
    assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert "Strict-Transport-Security" not in headers  # plain HTTP here


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


@pytest.mark.parametrize("path", ["/", "/inbox"])
def test_pages_load_only_same_origin_assets_with_integrity(client, path):
    page = client.get(path).get_data(as_text=True)
    tags = re.findall(r"<script\b[^>]*>|<link\b[^>]*stylesheet[^>]*>", page)
    assert tags
    for tag in tags:
        assert re.search(r'(?:src|href)="/static/', tag), tag
        assert 'integrity="sha384-' in tag, tag
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page), "inline script"
    assert " style=" not in page and "<style" not in page


def test_integrity_hash_matches_the_served_file(client):
    import base64
    import hashlib

    page = client.get("/").get_data(as_text=True)
    src, integrity = re.search(r'<script[^>]*src="([^"]+)"[^>]*integrity="([^"]+)"', page).groups()
    body = client.get(src).data
    assert integrity == "sha384-" + base64.b64encode(hashlib.sha384(body).digest()).decode()
