"""`secretlink verify`: compare what an instance serves with the installed release.

The pages of a running instance are fetched and set against the same pages
rendered by this installed copy of secretlink (its own app, in a throw-away data
folder): the markup, the Content-Security-Policy, the scripts and stylesheets each
page loads, and the bytes of every one of those files, both against the page's
`integrity` attribute and against the release's file.

What a match cannot prove: the server may serve a targeted visitor something else
than what it serves to this request (by address, cookie, timing or the look of the
request), or change it later. A match says only what was served to these requests.
"""

import base64
import hashlib
import importlib.metadata
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urljoin, urlsplit

import requests
from flask import Flask
from flask.testing import FlaskClient
from requests.structures import CaseInsensitiveDict

from secretlink.client import proxy
from secretlink.client.http import TIMEOUT, ClientError, network_error, normalize_server, parse_link
from secretlink.client.termsafe import escape_of
from secretlink.crypto import generate_keypair
from secretlink.crypto.origin import InvalidOriginError
from secretlink.settings import Settings, canonical_origin
from secretlink.web.app import create_app

# No page or asset of the release comes near this; a server sending more is
# stopped rather than allowed to fill the verifier's memory.
MAX_BODY = 16 * 1024 * 1024
# Pages name their workers and each worker's integrity hash in these attributes (the
# proof-of-work worker; the inbox page's backup worker; the sender page's worker that
# encrypts files); their scripts fetch a worker with that hash before starting it.
WORKER_ATTRIBUTES = (
    ("data-pow-worker", "data-pow-worker-integrity"),
    ("data-backup-worker", "data-backup-worker-integrity"),
    ("data-seal-worker", "data-seal-worker-integrity"),
)
# The inbox page names its notifications service worker the same way; it is served from
# the root (a service worker's scope is its folder), its bytes the release's bundle.
SERVICE_WORKER_ATTRIBUTE = "data-service-worker"
SERVICE_WORKER_INTEGRITY_ATTRIBUTE = "data-service-worker-integrity"
ROOT_FILES = {"/notify-sw.js": "build/notify-sw.js"}
# Announcing "I am the verifier" would make serving it a clean copy trivial. Looking
# like Tor Browser does not make the request indistinguishable (TLS and header
# details still differ), it only avoids handing the server a label.
REQUEST_HEADERS = {
    "User-Agent": "Mozilla/5.0 (Windows NT 10.0; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "Accept-Language": "en-US,en;q=0.5",
}
LOCAL_ORIGIN = "http://localhost"
# The inbox page says which Argon2id cost its backups get (an operator's setting, like a
# sender page's prompt is the inbox's own): the release renders its page with the same.
BACKUP_COST_ATTRIBUTES = {
    "data-kdf-memory-kib": "key_backup_memory_kib",
    "data-kdf-passes": "key_backup_passes",
}


def shown(text: str, limit: int = 80) -> str:
    """Server-chosen text made safe for a terminal: no control characters, bounded."""
    # Stricter than the CLI's other output: every non-printable character is escaped.
    safe = "".join(c if c.isprintable() else escape_of(c) for c in text)
    return safe if len(safe) <= limit else safe[: limit - 1] + "…"


def sri(data: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode()


def same_origin(url: str, origin: str) -> bool:
    try:
        return canonical_origin(url) == origin
    except InvalidOriginError:  # no origin of section 7.5 (another scheme, userinfo, ...)
        return False


# ---- reading pages ----


@dataclass(frozen=True)
class Ref:
    """Something a page makes the browser load and run or apply."""

    kind: str  # "script", "stylesheet", "worker" or "service worker"
    url: str  # absolute; empty for an inline script
    integrity: str | None = None
    text: str = ""  # an inline script's code

    def key(self, origin: str) -> str:
        """What makes two references the same, for comparing a served page with the release's."""
        if not self.url:
            return f"inline {self.kind} «{shown(self.text.strip(), 40)}»"
        if same_origin(self.url, origin):
            return f"{self.kind} {urlsplit(self.url).path}"
        return f"{self.kind} from another origin: {shown(self.url)}"


class PageParser(HTMLParser):
    """Collects a page's scripts, stylesheets and worker, and the sender page's prompt."""

    def __init__(self, base: str):
        super().__init__(convert_charrefs=True)
        self.base = base
        self.refs: list[Ref] = []
        self.prompt: list[str] = []
        self._prompt_tag: str | None = None
        self._prompt_seen = False
        self._inline: list[str] | None = None
        self.backup_cost: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes: dict[str, str] = {}
        for name, value in attrs:
            # A browser keeps the first of repeated attributes; a dict() would keep the last.
            attributes.setdefault(name, value or "")
        if tag == "script":
            self._script(attributes)
        elif tag == "link" and "stylesheet" in attributes.get("rel", "").lower().split():
            self._add("stylesheet", attributes.get("href", ""), attributes.get("integrity"))
        for url_attribute, integrity_attribute in WORKER_ATTRIBUTES:
            if url_attribute in attributes:
                self._add("worker", attributes[url_attribute], attributes.get(integrity_attribute))
        for name in BACKUP_COST_ATTRIBUTES:
            if name in attributes:
                self.backup_cost.setdefault(name, attributes[name])
        if SERVICE_WORKER_ATTRIBUTE in attributes:
            self._add(
                "service worker",
                attributes[SERVICE_WORKER_ATTRIBUTE],
                attributes.get(SERVICE_WORKER_INTEGRITY_ATTRIBUTE),
            )
        if attributes.get("id") == "prompt" and not self._prompt_seen:
            self._prompt_tag, self._prompt_seen = tag, True

    def _script(self, attributes: dict[str, str]) -> None:
        if "src" in attributes:
            self._add("script", attributes["src"], attributes.get("integrity"))
        else:
            self._inline = []

    def _add(self, kind: str, url: str, integrity: str | None) -> None:
        # Browsers strip surrounding whitespace from URL attributes before resolving.
        self.refs.append(Ref(kind, urljoin(self.base, url.strip()), integrity))

    def handle_data(self, data: str) -> None:
        if self._inline is not None:
            self._inline.append(data)
        if self._prompt_tag is not None:
            self.prompt.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._end_inline()
        if tag == self._prompt_tag:
            self._prompt_tag = None

    def _end_inline(self) -> None:
        if self._inline is not None:
            self.refs.append(Ref("script", "", None, "".join(self._inline)))
            self._inline = None

    def close(self) -> None:
        super().close()
        self._end_inline()  # a script left open at the end of the page still counts


@dataclass(frozen=True)
class Page:
    path: str
    status: int
    csp: str | None
    html: str
    location: str | None = None
    refs: tuple[Ref, ...] = field(default=())
    prompt: str = ""
    parse_error: str | None = None
    backup_cost: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(
        cls, origin: str, path: str, status: int, csp: str | None, html: str, location: str | None
    ) -> "Page":
        parser = PageParser(origin + path)
        error = None
        try:
            parser.feed(html)
            parser.close()
        except AssertionError as exc:
            # html.parser (Python 3.11) gives up on some malformed markup, such as an
            # unknown `<![...` section; the release's pages never hold any.
            error = shown(str(exc))
        refs, prompt = tuple(parser.refs), "".join(parser.prompt)
        cost = tuple(parser.backup_cost.items())
        return cls(path, status, csp, html, location, refs, prompt, error, cost)


# ---- fetching from the instance ----


@dataclass(frozen=True)
class Fetched:
    status: int
    headers: CaseInsensitiveDict
    body: bytes


class Fetcher:
    """GETs from one origin; every network failure becomes one ClientError sentence."""

    def __init__(self, session: requests.Session, origin: str):
        self.session = session
        self.origin = origin
        session.headers.update(REQUEST_HEADERS)

    def get(self, url: str) -> Fetched:
        try:
            # No redirects: where a page or script really comes from is what is checked.
            with self.session.get(
                url, timeout=TIMEOUT, allow_redirects=False, stream=True
            ) as response:
                return Fetched(response.status_code, response.headers, self._read(response, url))
        except requests.RequestException as exc:
            raise network_error(exc, self.origin) from None

    @staticmethod
    def _read(response: requests.Response, url: str) -> bytes:
        body = bytearray()
        for chunk in response.iter_content(64 * 1024):
            body += chunk
            if len(body) > MAX_BODY:
                raise ClientError(f"{shown(url)} sent more than {MAX_BODY >> 20} MiB; stopped")
        return bytes(body)

    def page(self, path: str) -> Page:
        fetched = self.get(self.origin + path)
        return Page.parse(
            self.origin,
            path,
            fetched.status,
            fetched.headers.get("Content-Security-Policy"),
            fetched.body.decode("utf-8", errors="replace"),
            fetched.headers.get("Location"),
        )


# ---- the release's own rendering ----


class Release:
    """This installed secretlink, rendering its pages in a throw-away data folder."""

    def __init__(self, app: Flask, origin: str = LOCAL_ORIGIN):
        self.app = app
        self.origin = origin
        self.client: FlaskClient = app.test_client()
        self.static = Path(app.static_folder or "")

    def page(self, path: str) -> Page:
        response = self.client.get(path, base_url=self.origin)
        return Page.parse(
            self.origin,
            path,
            response.status_code,
            response.headers.get("Content-Security-Policy"),
            response.get_data(as_text=True),
            response.headers.get("Location"),
        )

    def add_inbox(self, public_key: str, prompt: str) -> None:
        self.app.extensions["secretlink.storage"].save_inbox(public_key, prompt)

    def file_for(self, url: str) -> Path | None:
        """The release's file a same-origin static URL names, if there is one."""
        path = unquote(urlsplit(url).path)
        if path in ROOT_FILES:
            return self.static / ROOT_FILES[path]
        if not path.startswith("/static/"):
            return None
        parts = PurePosixPath(path.removeprefix("/static/")).parts
        if not parts or any(part in ("..", ".", "/") for part in parts):
            return None
        candidate = self.static.joinpath(*parts)
        return candidate if candidate.is_file() else None


def served_backup_cost(pages: list[Page]) -> dict[str, int]:
    """The backup cost the served pages name, as settings; only values the settings
    accept (anything else is left at the default, and the markup check finds it)."""
    named = dict(item for page in pages for item in page.backup_cost)
    cost = {}
    for attribute, name in BACKUP_COST_ATTRIBUTES.items():
        setting = next(item for item in fields(Settings) if item.name == name)
        try:
            cost[name] = setting.metadata["parse"](named[attribute])
        except (KeyError, ValueError):
            continue
    return cost


@contextmanager
def release_app(
    origin: str = LOCAL_ORIGIN, backup_cost: dict[str, int] | None = None
) -> Iterator[Release]:
    with tempfile.TemporaryDirectory(prefix="secretlink-verify-") as tmp:
        # Settings() rather than Settings.from_env(): the pages must not depend on
        # whatever SECRETLINK_* variables this shell happens to have.
        # Its origin is the instance's: pages name it (the no-JavaScript command lines),
        # and an onion origin adds Tor's proxy to them. The backup cost is the one the
        # instance's pages name (served_backup_cost), checked on its own.
        onion = (urlsplit(origin).hostname or "").endswith(".onion")
        where = {"onion_url": origin} if onion else {"base_url": origin}
        app = create_app(
            Settings(data_dir=Path(tmp), rate_limits_enabled=False, **where, **(backup_cost or {}))
        )
        try:
            yield Release(app, origin)
        finally:
            app.extensions["secretlink.storage"].engine.dispose()


# ---- checks ----


@dataclass(frozen=True)
class Check:
    item: str
    problems: tuple[str, ...] = ()
    detail: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems

    def line(self) -> str:
        if self.ok:
            return f"ok         {self.item}" + (f": {self.detail}" if self.detail else "")
        return f"DIFFERENT: {self.item}: " + "; ".join(self.problems)


def check_status(served: Page, expected: Page) -> Check:
    item = f"page {shown(served.path)}"
    if served.status == expected.status:
        return Check(item, detail=f"answered {served.status}")
    problem = f"answered {served.status}, the release answers {expected.status}"
    if served.location:
        problem += f" (redirect to {shown(served.location)})"
    return Check(item, (problem,))


def check_csp(served: Page, expected: Page) -> Check:
    item = f"page {shown(served.path)}: Content-Security-Policy"
    if served.csp == expected.csp:
        return Check(item, detail="as in the release")
    if served.csp is None:
        return Check(item, ("missing",))
    # A weaker policy would let injected or third-party code run unhindered.
    return Check(item, (f"«{shown(served.csp, 200)}» instead of the release's",))


def check_refs(served: Page, expected: Page, origin: str) -> Check:
    item = f"page {shown(served.path)}: scripts and stylesheets"
    if served.parse_error is not None:
        return Check(item, (f"the page cannot be parsed ({served.parse_error})",))
    have = {ref.key(origin) for ref in served.refs}
    want = {ref.key(origin) for ref in expected.refs}
    problems = [f"extra {key}" for key in sorted(have - want)]
    problems += [f"missing {key}" for key in sorted(want - have)]
    if problems:
        return Check(item, tuple(problems))
    return Check(item, detail=", ".join(sorted(want)) or "none")


def check_markup(served: Page, expected: Page) -> Check:
    """The whole page, so that changes no other check looks at show up too.

    It also makes the other checks robust against pages built to parse one way in
    Python's html.parser and another way in a browser: the bytes must be the release's.
    """
    item = f"page {shown(served.path)}: markup"
    if served.html == expected.html:
        return Check(item, detail="as in the release")
    have, want = served.html.splitlines(), expected.html.splitlines()
    for number, (line, wanted) in enumerate(zip(have, want, strict=False), start=1):
        if line != wanted:
            return Check(item, (f"line {number} differs: «{shown(line.strip())}»",))
    shorter = min(len(have), len(want))
    return Check(item, (f"{len(have)} lines instead of {len(want)} (same first {shorter})",))


def page_checks(served: Page, expected: Page, origin: str) -> list[Check]:
    status = check_status(served, expected)
    if not status.ok:
        return [status]  # another page altogether: comparing its parts says nothing more
    return [
        status,
        check_csp(served, expected),
        check_refs(served, expected, origin),
        check_markup(served, expected),
    ]


def check_asset(fetcher: Fetcher, release: Release, url: str, refs: list[Ref]) -> Check:
    parts = urlsplit(url)
    item = f"asset {shown(parts.path + (f'?{parts.query}' if parts.query else ''), 120)}"
    fetched = fetcher.get(url)
    if fetched.status != 200:
        return Check(item, (f"answered {fetched.status}",))
    problems = [integrity_problem(ref, fetched.body) for ref in refs]
    local = release.file_for(url)
    if local is None:
        problems.append("not a file of the installed release")
    elif local.read_bytes() != fetched.body:
        relative = local.relative_to(release.static.parent).as_posix()
        problems.append(f"bytes differ from the release's {relative} (served {sri(fetched.body)})")
    found = tuple(sorted({problem for problem in problems if problem}))
    if found:
        return Check(item, found)
    return Check(item, detail="bytes equal the release's file" + integrity_note(refs))


def integrity_problem(ref: Ref, body: bytes) -> str | None:
    if ref.integrity is None:
        return f"the page loads this {ref.kind} without an integrity attribute"
    # Exactly the one sha384 the release writes: with several hashes a browser uses
    # only the strongest algorithm, so a second one could silently take over.
    if ref.integrity.split() != [sri(body)]:
        return f"integrity attribute «{shown(ref.integrity)}» does not match the bytes served"
    return None


def integrity_note(refs: list[Ref]) -> str:
    return " and the page's integrity attribute" if any(ref.integrity for ref in refs) else ""


def asset_checks(fetcher: Fetcher, release: Release, refs: list[Ref], origin: str) -> list[Check]:
    by_url: dict[str, list[Ref]] = {}
    for ref in refs:
        # Inline and other-origin code is already a finding of its page; it is not fetched.
        if ref.url and same_origin(ref.url, origin):
            by_url.setdefault(ref.url, []).append(ref)
    return [check_asset(fetcher, release, url, by_url[url]) for url in sorted(by_url)]


# ---- the whole run ----


@dataclass(frozen=True)
class Report:
    origin: str
    version: str
    checks: tuple[Check, ...]
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def lines(self) -> list[str]:
        lines = [check.line() for check in self.checks]
        lines += [f"note: {note}" for note in self.notes]
        return [*lines, self.summary()]

    def summary(self) -> str:
        total = len(self.checks)
        release_name = f"the installed release (secretlink {self.version})"
        if self.ok:
            return (
                f"all {total} checks match {release_name}; this says only what {self.origin} "
                "served to these requests"
            )
        different = sum(not check.ok for check in self.checks)
        return f"{different} of {total} checks DIFFERENT from {release_name}"


def sender_path(origin: str, link: str | None) -> str:
    if link is None:
        # A fresh key: no inbox can exist for it, so the server answers its error page.
        return f"/to/{generate_keypair().public_key_text}"
    target = parse_link(link)
    if target.server != origin:
        raise ClientError(f"--link is a link to {target.server}, not to {origin}")
    return f"/to/{target.public_key_text}"


NO_LINK_NOTE = (
    "no --link: the sender page checked is the error page of an unknown inbox, and the "
    "sender page's scripts were fetched at the release's own URLs; give --link "
    "https://HOST/to/KEY to check a real sender page"
)


def verify(url: str, link: str | None = None) -> Report:
    """Fetch the instance's pages and assets and compare them with this release."""
    origin = normalize_server(url)
    sender = sender_path(origin, link)
    with proxy.session() as session:
        fetcher = Fetcher(session, origin)
        served = [fetcher.page(path) for path in ("/", "/inbox", "/reply", sender)]
        backup_cost = served_backup_cost(served)
        with release_app(origin, backup_cost) as release:
            checks = compare(fetcher, release, served, sender, link)
    checks.append(backup_cost_check(backup_cost))
    notes = () if link is not None else (NO_LINK_NOTE,)
    return Report(origin, release_version(), tuple(checks), notes)


def backup_cost_check(backup_cost: dict[str, int]) -> Check:
    """What the inbox page's backups cost a guesser: an operator's choice, within the
    bounds every reader enforces (a value outside them fails the markup check)."""
    default = Settings()
    memory = backup_cost.get("key_backup_memory_kib", default.key_backup_memory_kib)
    passes = backup_cost.get("key_backup_passes", default.key_backup_passes)
    detail = f"new backups get Argon2id with {memory} KiB and {passes} passes"
    if (memory, passes) != (default.key_backup_memory_kib, default.key_backup_passes):
        detail += (
            f" (the release's default: {default.key_backup_memory_kib} KiB, "
            f"{default.key_backup_passes} passes)"
        )
    return Check("page /inbox: backup cost", detail=detail)


def compare(
    fetcher: Fetcher, release: Release, served: list[Page], sender: str, link: str | None
) -> list[Check]:
    """Every page and asset check of the served pages against the release's."""
    origin = fetcher.origin
    expected = expected_pages(release, served, real_sender=link is not None)
    checks = [
        check
        for have, want in zip(served, expected, strict=True)
        for check in page_checks(have, want, origin)
    ]
    refs = [ref for page in served for ref in page.refs]
    if link is None:
        refs += release_sender_refs(release, sender)
    return checks + asset_checks(fetcher, release, refs, origin)


def expected_pages(release: Release, served: list[Page], real_sender: bool) -> list[Page]:
    """The release's own rendering of each served page; the sender page comes last."""
    sender = served[-1]
    if real_sender:
        if sender.status != 200:
            raise ClientError(
                f"the sender page of --link answered {sender.status}: "
                "is there an inbox for this link on the server?"
            )
        # The prompt is the inbox's own text; everything around it must be the release's.
        release.add_inbox(sender.path.removeprefix("/to/"), sender.prompt)
    return [release.page(page.path) for page in served]


def release_version() -> str:
    try:
        return importlib.metadata.version("secretlink")
    except importlib.metadata.PackageNotFoundError:
        return "version unknown"  # run from a checkout that was never installed


def release_sender_refs(release: Release, sender: str) -> list[Ref]:
    """What the release's sender page loads, as URLs on the instance being checked."""
    release.add_inbox(sender.removeprefix("/to/"), "")
    page = release.page(sender)
    return list(page.refs)  # rendered for the instance's origin already
