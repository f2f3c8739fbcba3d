"""The notifications panel of the inbox page in real Chromium.

Chromium's own push service is not reachable here, so a real push subscription
cannot be made: what is tested is that the service worker registers under the
page's CSP and Trusted Types, is served with its own strict CSP, and that a webhook
set up through the page is told the owner's neutral words, and nothing else, when a
message arrives. tests/test_notifications.py delivers Web Push to a local RFC 8030
endpoint with keys it makes.
"""

from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import test_browser
from conftest import serve_in_thread, serving_in_thread
from test_browser import create_inbox_in_browser, new_page

from secretlink.notify import worker

pytestmark = pytest.mark.browser

# The browser and its error watch, as tests/test_browser.py has them.
playwright_driver = test_browser.playwright_driver
browser = test_browser.browser
page_errors = test_browser.page_errors


@pytest.fixture
def notify_server(tmp_path):
    with serving_in_thread(
        tmp_path / "live", notify_allow_local_targets=True, notify_backoff=0, notify_timeout=2
    ) as server:
        yield server


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    received: list[tuple[str, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append((self.path, body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    serve_in_thread(server)
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()


def open_panel(page, base_url: str):
    page.goto(base_url + "/inbox")
    page.locator("#notify").wait_for()
    page.get_by_text("Notifications", exact=True).click()
    page.get_by_text("Off: nothing is sent").wait_for()


def test_a_webhook_set_up_in_the_page_gets_only_the_neutral_words(
    browser, notify_server, page_errors, webhook
):
    url, received = webhook
    owner = new_page(browser, page_errors)
    link = create_inbox_in_browser(owner, notify_server.url)
    open_panel(owner, notify_server.url)
    owner.get_by_label("Words of the notification").fill("Post for you")
    owner.get_by_label("Wait at most this many minutes").fill("0")
    owner.get_by_label("Webhook URL").fill(f"{url}/topic")
    owner.get_by_role("button", name="Save").click()
    owner.get_by_role("status").filter(has_text="Notification settings saved").wait_for()
    owner.get_by_text('On: "Post for you" goes to a webhook').wait_for()

    sender = new_page(browser, page_errors)
    sender.goto(link)
    sender.get_by_label("Message").fill("the words nobody else may read")
    sender.get_by_role("button", name="Send").click()
    sender.get_by_role("status").filter(has_text="Sent").wait_for()

    assert received == []  # never sent from the request that stored the message
    done = worker.run_once(notify_server.app.extensions["secretlink.notify"])
    assert done.delivered == 1
    assert received == [("/topic", b"Post for you")]

    owner.get_by_role("button", name="Turn notifications off").click()
    owner.get_by_role("status").filter(has_text="Notifications are off").wait_for()


def test_the_service_worker_registers_under_the_csp(browser, notify_server, page_errors):
    owner = new_page(browser, page_errors)
    owner.context.grant_permissions(["notifications"], origin=notify_server.url)
    create_inbox_in_browser(owner, notify_server.url)
    open_panel(owner, notify_server.url)
    owner.get_by_role("button", name="Notify this device").click()
    # Subscribing needs Chromium's push service, which is out of reach here: the page
    # says so plainly. The worker itself registered and runs, under the page's CSP.
    owner.get_by_role("status").filter(has_text="could not subscribe").wait_for()
    script = owner.evaluate(
        "navigator.serviceWorker.getRegistration('/')"
        ".then((r) => r && (r.active || r.waiting || r.installing).scriptURL)"
    )
    assert script == notify_server.url + "/notify-sw.js"
    served = owner.request.get(notify_server.url + "/notify-sw.js")
    assert served.headers["content-security-policy"].startswith("default-src 'none'")
    assert served.headers["content-type"].startswith("text/javascript")
    # Chromium's own note that a headless (incognito-like) profile has no Push API is
    # expected; any other error (a CSP or Trusted Types violation) still fails the test.
    owner.close()
    page_errors.errors[:] = [e for e in page_errors.errors if "Push API" not in e]


def test_the_service_worker_shows_only_the_words_a_push_carries(
    browser, notify_server, page_errors
):
    """A push delivered to the worker (through DevTools, standing in for the push
    service) shows the words as the notification's title, and nothing else."""
    owner = new_page(browser, page_errors)
    owner.context.grant_permissions(["notifications"], origin=notify_server.url)
    create_inbox_in_browser(owner, notify_server.url)
    open_panel(owner, notify_server.url)
    devtools = owner.context.new_cdp_session(owner)
    registrations: list[dict] = []
    devtools.on(
        "ServiceWorker.workerRegistrationUpdated",
        lambda event: registrations.extend(event["registrations"]),
    )
    devtools.send("ServiceWorker.enable")
    owner.get_by_role("button", name="Notify this device").click()
    owner.get_by_role("status").filter(has_text="could not subscribe").wait_for()
    [registration_id] = {
        r["registrationId"] for r in registrations if r["scopeURL"] == notify_server.url + "/"
    }
    devtools.send(
        "ServiceWorker.deliverPushMessage",
        {"origin": notify_server.url, "registrationId": registration_id, "data": "Post for you"},
    )
    shown = owner.wait_for_function(
        "navigator.serviceWorker.getRegistration('/')"
        ".then((r) => r.getNotifications())"
        ".then((all) => all.length ? all.map((n) => [n.title, n.body, n.tag]) : null)"
    ).json_value()
    assert shown == [["Post for you", "", "secretlink"]]
    owner.close()
    page_errors.errors[:] = [e for e in page_errors.errors if "Push API" not in e]
