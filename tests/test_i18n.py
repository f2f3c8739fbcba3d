"""Languages: the catalogues are complete, every page string goes through them, and the
language is chosen per request (`?lang=`, Accept-Language) without storing anything.

"Not translatable" is caught with a pseudo-language made here from messages.pot: every
letter of every msgstr turned into its full-width form. A page rendered in it must show
no plain Latin word outside elements marked `translate="no"` (the brand, keys, commands,
safety words, the language names, the inbox owner's prompt).
"""

import html
import json
import re
from html.parser import HTMLParser
from io import BytesIO
from pathlib import Path

import pytest
from babel import Locale
from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po
from conftest import ROOT, register
from flask_babel import get_babel

from secretlink.web.i18n import LANGUAGES, TRANSLATIONS

TRANSLATED = [code for code in LANGUAGES if code != "en"]
# As `make translations` passes them to pybabel (Makefile, BABEL_KEYWORDS).
KEYWORDS = {**DEFAULT_KEYWORDS, "lazy_gettext": None, "t": None, "tn": (1, 2)}
# A language the app does not ship, standing in for the pseudo-language.
PSEUDO = "eo"
PLACEHOLDER = re.compile(r"%\([a-z_]+\)s|\{[a-z_]+\}")


@pytest.fixture
def database_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'secretlink.sqlite3'}"  # pages only: one database is enough


def template() -> Catalog:
    with (TRANSLATIONS / "messages.pot").open("rb") as file:
        return read_po(file)


def catalogue(lang: str) -> Catalog:
    with (TRANSLATIONS / lang / "LC_MESSAGES" / "messages.po").open("rb") as file:
        return read_po(file, locale=lang)


def placeholders(text: str) -> set[str]:
    return set(PLACEHOLDER.findall(text))


# ---- the catalogues ----


def test_the_template_holds_every_string_of_the_sources():
    with (ROOT / "babel.cfg").open() as file:
        method_map, options_map = parse_mapping_cfg(file)
    extracted = {
        message[2] if isinstance(message[2], str) else message[2][0]
        for message in extract_from_dir(ROOT, method_map, options_map, keywords=KEYWORDS)
    }
    in_template = {m.id if isinstance(m.id, str) else m.id[0] for m in template() if m.id}
    assert extracted - in_template == set(), "run `make translations`: strings not extracted"
    assert in_template - extracted == set(), "run `make translations`: strings no longer used"


@pytest.mark.parametrize("lang", TRANSLATED)
def test_every_string_is_translated_with_its_placeholders(lang):
    po = catalogue(lang)
    # One form for each of CLDR's categories (zero, one, two, few, many) and "other".
    assert po.num_plurals == len(Locale.parse(lang).plural_form.tags) + 1
    ids = {m.id for m in po if m.id}
    assert ids == {m.id for m in template() if m.id}, "run `make translations`"
    assert not po.obsolete
    for message in po:
        if not message.id:
            continue
        where = f"{lang}: {message.id!r}"
        assert not message.fuzzy, where
        if isinstance(message.id, tuple):
            singular, plural = message.id
            assert len(message.string) == po.num_plurals and all(message.string), where
            wanted = placeholders(singular) | placeholders(plural)
            # A form may leave out the count ("يوم واحد", one day) but nothing else.
            counts = {"%(num)s", "{count}"}
            for form in message.string:
                assert wanted - counts <= placeholders(form) <= wanted, where
        else:
            assert message.string, where
            assert placeholders(message.string) == placeholders(message.id), where


@pytest.mark.parametrize("lang", TRANSLATED)
def test_compiled_catalogues_match_their_sources(lang):
    def texts(catalogue_: Catalog) -> dict:
        return {
            m.id if isinstance(m.id, str) else tuple(m.id): m.string
            if isinstance(m.string, str)
            else tuple(m.string)
            for m in catalogue_
            if m.id
        }

    with (TRANSLATIONS / lang / "LC_MESSAGES" / "messages.mo").open("rb") as file:
        compiled = texts(read_mo(file))
    source = texts(catalogue(lang))
    assert compiled == source, "run `make translations` to compile the .po files"


# ---- choosing the language ----


def test_accept_language_chooses_and_pages_vary_on_it(client):
    answers = {
        "de-DE,de;q=0.9,en;q=0.5": ("de", "Deine Postfächer"),
        "fr-FR,ar;q=0.8": ("ar", "صناديقك"),
        "fr-FR": ("en", "Your inboxes"),
        "": ("en", "Your inboxes"),
    }
    for header, (lang, heading) in answers.items():
        response = client.get("/inbox", headers={"Accept-Language": header} if header else {})
        page = response.get_data(as_text=True)
        assert f'<html lang="{lang}"' in page and f"<h1>{heading}</h1>" in page, header
        assert "Accept-Language" in response.headers["Vary"]
        assert "Set-Cookie" not in response.headers


def test_lang_parameter_wins_and_is_kept_by_links_between_pages(client):
    response = client.get("/?lang=es", headers={"Accept-Language": "de"})
    page = response.get_data(as_text=True)
    assert '<html lang="es" dir="ltr">' in page and "Crear buzón" in page
    assert "Set-Cookie" not in response.headers
    assert 'href="/inbox?lang=es"' in page  # the navigation
    assert 'href="/inbox?lang=es#restore"' in page  # the query before the fragment
    # Without ?lang= the links stay as they were: nothing marks the visitor.
    plain = client.get("/", headers={"Accept-Language": "es"}).get_data(as_text=True)
    assert "Crear buzón" in plain and "?lang=" not in re.sub(r'href="\?lang=\w+"', "", plain)


def test_an_unknown_lang_parameter_falls_back_to_accept_language(client):
    page = client.get("/?lang=xx", headers={"Accept-Language": "de"}).get_data(as_text=True)
    assert '<html lang="de"' in page and 'href="/inbox"' in page


def test_every_page_offers_each_language_in_its_own_name(client, keypair):
    register(client, keypair)
    for path in ["/", "/inbox", "/reply", f"/to/{keypair.public_key_text}", "/nothing"]:
        page = client.get(path).get_data(as_text=True)
        for code, name in LANGUAGES.items():
            link = f'<a href="?lang={code}" lang="{code}" hreflang="{code}"'
            assert link in page and f">{name}</a>" in page, (path, code)


def test_arabic_pages_are_right_to_left(client):
    page = client.get("/", headers={"Accept-Language": "ar"}).get_data(as_text=True)
    assert '<html lang="ar" dir="rtl">' in page


def test_error_pages_speak_the_visitors_language(client):
    response = client.get("/to/short", headers={"Accept-Language": "de"})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "<h1>Beschädigter Link</h1>" in page and "Dieser Link ist beschädigt" in page
    missing = client.get("/nothing-here?lang=es").get_data(as_text=True)
    assert "Aquí no hay ninguna página." in missing and 'href="/?lang=es"' in missing
    # The API keeps its English, stable errors.
    assert client.get("/api/v1/nope", headers={"Accept-Language": "de"}).get_json()["error"] == (
        "no such endpoint"
    )


def test_sizes_in_settings_are_plural_forms_of_the_language(client):
    page = client.get("/inbox?lang=ar").get_data(as_text=True)
    # 1, 7 and 30 days take three different Arabic forms.
    assert ">يوم واحد<" in page and ">7 أيام<" in page and ">30 يومًا<" in page
    assert ">1 Tag<" in client.get("/inbox?lang=de").get_data(as_text=True)


# ---- every string translatable: the pseudo-language ----


def pseudo(text: str) -> str:
    """Every ASCII letter as its full-width form; placeholders stay as they are."""
    parts = PLACEHOLDER.split(text)
    kept = [*PLACEHOLDER.findall(text), ""]
    return "".join(
        "".join(chr(ord(c) + 0xFEE0) if c.isascii() and c.isalpha() else c for c in part) + keep
        for part, keep in zip(parts, kept, strict=True)
    )


def pseudo_translations(folder: Path) -> Path:
    """A compiled pseudo-language catalogue of every string in messages.pot."""
    catalogue_ = Catalog(locale=PSEUDO)
    for message in template():
        if not message.id:
            continue
        if isinstance(message.id, tuple):
            string = tuple(pseudo(message.id[i]) for i in (0, 1))
        else:
            string = pseudo(message.id)
        catalogue_.add(message.id, string, flags=message.flags)
    target = folder / PSEUDO / "LC_MESSAGES"
    target.mkdir(parents=True)
    buffer = BytesIO()
    write_mo(buffer, catalogue_)
    (target / "messages.mo").write_bytes(buffer.getvalue())
    return folder


def add_pseudo_language(app, folder: Path) -> None:
    app.extensions["secretlink.languages"][PSEUDO] = "pseudo"
    get_babel(app).translation_directories.insert(0, str(pseudo_translations(folder)))


# Attributes people read or hear: the accessible names and hints.
READ_ATTRIBUTES = ("aria-label", "placeholder", "title", "alt")
LATIN_WORD = re.compile(r"[A-Za-z]{2,}")


class Untranslated(HTMLParser):
    """Collects text and read attributes with a plain Latin word outside translate="no"."""

    VOID = frozenset(
        {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}
    )

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, bool]] = []  # (tag, inside translate="no" or script)
        self.found: list[str] = []

    def skipping(self) -> bool:
        return bool(self.stack) and self.stack[-1][1]

    def handle_starttag(self, tag, attrs) -> None:
        attributes = dict(attrs)
        skip = self.skipping() or attributes.get("translate") == "no" or tag in ("script", "style")
        if not skip:
            for name in READ_ATTRIBUTES:
                value = attributes.get(name) or ""
                if LATIN_WORD.search(value):
                    self.found.append(f"<{tag} {name}={value!r}>")
        if tag not in self.VOID:
            self.stack.append((tag, skip))

    def handle_endtag(self, tag) -> None:
        while self.stack:
            if self.stack.pop()[0] == tag:
                break

    def handle_data(self, data) -> None:
        if not self.skipping() and LATIN_WORD.search(data):
            self.found.append(data.strip())


def test_the_pseudo_language_changes_every_letter_but_placeholders():
    wide = "\uff2b\uff45\uff45\uff50 %(num)s {count} \uff44\uff41\uff59\uff53"  # "Keep", "days"
    assert pseudo("Keep %(num)s {count} days") == wide


def test_every_template_string_is_translatable(app, client, keypair, tmp_path):
    add_pseudo_language(app, tmp_path / "pseudo")
    register(client, keypair, prompt="Tell me anything")
    pages = ["/", "/inbox", "/reply", f"/to/{keypair.public_key_text}", "/nothing", "/to/bad"]
    for path in pages:
        response = client.get(path, query_string={"lang": PSEUDO})
        page = response.get_data(as_text=True)
        assert f'<html lang="{PSEUDO}"' in page, path
        parser = Untranslated()
        parser.feed(page)
        assert parser.found == [], f"{path}: not translatable: {parser.found}"


# ---- the page scripts' catalogue ----


def test_page_scripts_get_their_catalogue_as_data_in_the_page(client):
    """A <meta> attribute of JSON (no inline script: the CSP forbids it), holding the
    scripts' strings only, plural forms keyed by CLDR category as Intl.PluralRules says."""
    english = client.get("/inbox").get_data(as_text=True)
    assert 'name="secretlink-catalogue"' not in english  # the source strings are English
    page = client.get("/inbox?lang=ar").get_data(as_text=True)
    [content] = re.findall(r'<meta name="secretlink-catalogue" content="([^"]*)">', page)
    catalogue = json.loads(html.unescape(content))
    assert catalogue["Copied"] == "نُسخ"
    assert catalogue["{count} unread message"] == {
        "zero": "{count} رسالة غير مقروءة",
        "one": "رسالة واحدة غير مقروءة",
        "two": "رسالتان غير مقروءتين",
        "few": "{count} رسائل غير مقروءة",
        "many": "{count} رسالة غير مقروءة",
        "other": "{count} رسالة غير مقروءة",
    }
    assert "Create inbox" not in catalogue  # a template string: rendered, not shipped
    german = client.get("/inbox?lang=de").get_data(as_text=True)
    forms = json.loads(html.unescape(re.findall(r'catalogue" content="([^"]*)"', german)[0]))
    assert forms["{count} byte"] == {"one": "{count} Byte", "other": "{count} Byte"}
