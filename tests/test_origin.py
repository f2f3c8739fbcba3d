"""The origin list, the Host check (secretlink/web/origin.py) and its neighbours in
issue 8 item 8: the data folder's mode and the CSP that docs/API.md promises."""

import json
import re
import stat
from dataclasses import replace

import pytest
import requests
from conftest import ROOT
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from werkzeug.test import EnvironBuilder, run_wsgi_app

from secretlink import create_app
from secretlink.client.http import normalize_server
from secretlink.crypto.origin import InvalidOriginError, canonical_origin
from secretlink.crypto.proof import transcript
from secretlink.settings import Settings, SettingsError
from secretlink.web.origin import Origin, loopback_names, origin_list, refuse_unsafe_serving

settings_for_hypothesis = hypothesis_settings(max_examples=300, deadline=None)


@pytest.mark.parametrize(
    ("bind", "names"),
    [
        ("127.0.0.1", ("127.0.0.1", "localhost")),
        ("127.0.0.2", ("127.0.0.2",)),  # localhost is 127.0.0.1, not this address
        ("localhost", ("localhost", "127.0.0.1", "[::1]")),
        ("::1", ("[::1]", "localhost")),
        ("[::1]", ("[::1]", "localhost")),
        ("0.0.0.0", None),
        ("::", None),
        ("192.0.2.1", None),
        ("2001:db8::1", None),
        ("secretlink.example", None),  # a name: not known to be loopback
    ],
)
def test_loopback_binds_answer_to_their_own_names(bind, names):
    assert loopback_names(bind) == names


def test_the_origin_list():
    loopback = Settings(host="127.0.0.1", port=8000)
    assert [str(o) for o in origin_list(loopback)] == [
        "http://127.0.0.1:8000",
        "http://localhost:8000",
    ]
    ipv6_https = Settings(host="::1", port=443, tls_cert=None)
    assert [str(o) for o in origin_list(ipv6_https)] == ["http://[::1]:443", "http://localhost:443"]
    configured = replace(
        loopback, base_url="https://secretlink.example", onion_url="http://x.onion"
    )
    assert [str(o) for o in origin_list(configured)] == [
        "https://secretlink.example",
        "http://x.onion",
    ]
    assert origin_list(Settings(host="0.0.0.0")) == ()  # nothing answers
    assert origin_list(Settings(host="0.0.0.0", trust_host_header=True)) == ()
    assert Origin.parse("https://x.example") == Origin("https", "x.example", 443)


def test_serve_refuses_only_an_unknown_origin_on_a_public_bind():
    for host in ("0.0.0.0", "::", "192.0.2.1", "my-host"):
        with pytest.raises(SettingsError, match="SECRETLINK_BASE_URL is not set"):
            refuse_unsafe_serving(Settings(host=host))
        refuse_unsafe_serving(Settings(host=host, base_url="https://secretlink.example"))
        refuse_unsafe_serving(Settings(host=host, onion_url="http://x.onion"))
        refuse_unsafe_serving(Settings(host=host, trust_host_header=True))
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        refuse_unsafe_serving(Settings(host=host))


@pytest.mark.parametrize(
    ("settings", "host", "expected"),
    [
        (Settings(host="::1", port=8000), "[::1]:8000", "http://[::1]:8000"),
        (Settings(host="::1", port=8000), "[0:0::1]:8000", "http://[::1]:8000"),
        (Settings(host="::1", port=8000), "localhost:8000", "http://localhost:8000"),
        (Settings(host="::1", port=8000), "[::1]", None),
        (Settings(base_url="https://a.example"), "a.example:443", "https://a.example"),
        (Settings(base_url="https://a.example"), "A.Example.", None),  # trailing dot
        (Settings(base_url="https://a.example"), "a.example:80", None),
        (Settings(base_url="http://a.example:8080"), "a.example:8080", "http://a.example:8080"),
        (Settings(base_url="http://a.example:8080"), "a.example", None),
        (
            Settings(base_url="https://xn--fa-hia.example"),
            "XN--FA-HIA.example",
            "https://xn--fa-hia.example",
        ),
        (
            Settings(base_url="https://faß.example"),
            "xn--fa-hia.example",
            "https://xn--fa-hia.example",
        ),
    ],
)
def test_a_host_matches_an_origin_by_name_and_port(tmp_path, settings, host, expected):
    app = create_app(replace(settings, data_dir=tmp_path))
    key = "kjQdjJ9-RPuoDlbYGLEsF8-da5oDnfeqKS-u4QLZr08"
    # Called as a WSGI server would: Flask's test client rebuilds the URL for its
    # cookies with the standard library's IDNA2003 codec, which cannot read xn--fa-hia.
    environ = EnvironBuilder(path=f"/to/{key}", headers={"Host": host}).get_environ()
    body, status, _ = run_wsgi_app(app, environ, buffered=True)
    if expected is None:
        assert status.startswith("400 ")
        assert json.loads(b"".join(body))["code"] in ("host_not_allowed", "bad_host")
    else:
        assert status.startswith("404 ")  # the page for an unknown inbox: Host accepted
    app.extensions["secretlink.storage"].engine.dispose()


def test_healthz_answers_any_host(tmp_path):
    app = create_app(Settings(data_dir=tmp_path, base_url="https://a.example"))
    assert app.test_client().get("/healthz", headers={"Host": "10.0.0.7:8000"}).status_code == 200
    app.extensions["secretlink.storage"].engine.dispose()


def test_the_cli_sends_to_and_proves_for_the_punycode_origin():
    """`--server http://FAß.Example:PORT`: requests sends Host xn--fa-hia.example (UTS 46
    non-transitional), and the proof must be made for that same origin."""
    server = normalize_server("http://FAß.Example:8000")
    assert server == "http://xn--fa-hia.example:8000"
    sent = requests.Request("GET", "http://FAß.Example:8000/api/v1/x").prepare().url
    assert sent.startswith(server + "/")


def test_an_existing_data_folder_is_tightened_to_0700(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    Settings(data_dir=data).with_data_dir(tmp_path)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    fresh = tmp_path / "fresh"
    Settings(data_dir=fresh).with_data_dir(tmp_path)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700


def test_api_md_states_the_csp_that_is_sent(client):
    document = (ROOT / "docs" / "API.md").read_text()
    row = re.search(r"^\| `Content-Security-Policy` \| `([^`]+)` \|", document, re.MULTILINE)
    assert row, "docs/API.md has no Content-Security-Policy row"
    for path in ("/", "/inbox", "/api/v1/nope", "/healthz"):
        assert client.get(path).headers["Content-Security-Policy"] == row[1], path


def test_behind_trusted_proxies_the_forwarded_host_is_checked(tmp_path):
    settings = Settings(
        data_dir=tmp_path, base_url="https://secretlink.example", trusted_proxy_hops=1
    )
    app = create_app(settings)
    client = app.test_client()

    def status(forwarded_host: str) -> int:
        headers = {"Host": "127.0.0.1:8000", "X-Forwarded-Host": forwarded_host}
        return client.get("/inbox", headers=headers).status_code

    assert status("secretlink.example") == 200
    assert status("relay.example") == 400
    assert status("a b") == 400
    # Without trusted proxies the header means nothing: the Host itself is checked.
    plain = create_app(replace(settings, trusted_proxy_hops=0))
    headers = {"Host": "secretlink.example", "X-Forwarded-Host": "relay.example"}
    assert plain.test_client().get("/inbox", headers=headers).status_code == 200
    for each in (app, plain):
        each.extensions["secretlink.storage"].engine.dispose()


@settings_for_hypothesis
@given(st.text(max_size=80) | st.from_regex(r"https?://[^/?#]{0,40}(:[0-9]{0,6})?", fullmatch=True))
def test_any_url_gives_a_canonical_origin_or_invalid_origin_error(url):
    try:
        origin = canonical_origin(url)
    except InvalidOriginError:
        return
    assert canonical_origin(origin) == origin
    transcript(bytes(32), bytes(32), bytes(32), 0, origin)  # a valid transcript origin


@pytest.fixture(scope="module")
def host_app(tmp_path_factory):
    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("h"), base_url="http://localhost"))
    yield app
    app.extensions["secretlink.storage"].engine.dispose()


@settings_for_hypothesis
@given(host=st.text(max_size=40))
def test_any_host_header_is_answered_without_a_server_error(host_app, host):
    environ = EnvironBuilder(path="/inbox").get_environ()
    # As a server hands it over: the header's bytes, read as Latin-1.
    environ["HTTP_HOST"] = host.encode("utf-8", "surrogatepass").decode("latin-1")
    _, status, _ = run_wsgi_app(host_app, environ, buffered=True)
    assert status[:3] in ("200", "400"), (host, status)
