"""The pages' language: Flask-Babel catalogues, chosen per request, never remembered.

The language is `?lang=` when it names a supported language, else the best match for
the browser's Accept-Language, else English. Nothing is stored: no cookie (a language
cookie would mark a sender's device), no session. Pages say `Vary: Accept-Language`,
and every link between pages keeps `?lang=` when the request had it (`page_url`).

Catalogues live in secretlink/translations/<lang>/LC_MESSAGES/messages.po, compiled
to the committed messages.mo beside it (`make translations`; README, "Languages").
"""

import json
from functools import cache
from importlib.resources import files
from pathlib import Path

from babel import Locale
from babel.messages.pofile import read_po
from flask import Flask, Response, current_app, request, url_for
from flask_babel import Babel, get_locale, get_translations

# Every supported language and its name in that language, for the switcher.
LANGUAGES: dict[str, str] = {
    "en": "English",
    "es": "Español",
    "de": "Deutsch",
    "ar": "العربية",
}
DEFAULT_LANGUAGE = "en"
TRANSLATIONS = Path(str(files("secretlink"))) / "translations"
# The page scripts' sources: their strings go to the page in its catalogue.
SCRIPT_SOURCES = "webui/src/"
# Numbers tried to find one of each of a language's plural categories (Spanish has
# "many" only for millions).
PLURAL_SAMPLES = (*range(200), 1000, 1_000_000)


def languages() -> dict[str, str]:
    """The languages this app offers (tests add a pseudo-language to theirs)."""
    return current_app.extensions["secretlink.languages"]


def requested_language() -> str | None:
    """`?lang=` when it names a supported language, else None."""
    wanted = request.args.get("lang", "")
    return wanted if wanted in languages() else None


def select_locale() -> str:
    return (
        requested_language()
        or request.accept_languages.best_match(list(languages()))
        or DEFAULT_LANGUAGE
    )


def page_url(endpoint: str, _anchor: str | None = None, **values: str) -> str:
    """url_for() that keeps this request's `?lang=` (before any `#fragment`)."""
    lang = requested_language()
    if lang:
        values["lang"] = lang
    return url_for(endpoint, _anchor=_anchor, **values)


def text_direction() -> str:
    """ "rtl" for a right-to-left language (Arabic), else "ltr"."""
    return "rtl" if Locale.parse(get_locale()).character_order == "right-to-left" else "ltr"


@cache
def script_messages() -> tuple[tuple[str, str | None], ...]:
    """(msgid, msgid_plural or None) of every string the page scripts use, from
    messages.pot's source locations."""
    with (TRANSLATIONS / "messages.pot").open("rb") as file:
        template = read_po(file)
    found = []
    for message in template:
        if message.id and any(path.startswith(SCRIPT_SOURCES) for path, _ in message.locations):
            found.append((message.id, None) if isinstance(message.id, str) else tuple(message.id))
    return tuple(found)


def _script_catalogue(locale: str) -> str:
    translations = get_translations()
    rule = Locale.parse(locale).plural_form
    samples: dict[str, int] = {}
    for number in PLURAL_SAMPLES:
        samples.setdefault(rule(number), number)
    catalogue: dict[str, str | dict[str, str]] = {}
    for singular, plural in script_messages():
        if plural is None:
            text = translations.gettext(singular)
            if text != singular:
                catalogue[singular] = text
        else:
            forms = {tag: translations.ngettext(singular, plural, n) for tag, n in samples.items()}
            english = {tag: singular if n == 1 else plural for tag, n in samples.items()}
            if forms != english:
                catalogue[singular] = forms
    return json.dumps(catalogue, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def script_catalogue() -> str:
    """The translations of the page scripts' strings for this request's language, as
    JSON ("" when there are none: English): webui/src/i18n.js reads it from the page.
    A string's plural forms are keyed by CLDR category (one, few, ...), as the
    browser's Intl.PluralRules names them."""
    locale = str(get_locale())
    cached = current_app.extensions["secretlink.script_catalogues"]
    if locale not in cached:
        text = _script_catalogue(locale)
        cached[locale] = "" if text == "{}" else text
    return cached[locale]


def add_vary(response: Response) -> Response:
    if response.mimetype == "text/html":
        response.vary.add("Accept-Language")
    return response


def install(app: Flask) -> None:
    app.extensions["secretlink.languages"] = dict(LANGUAGES)
    app.extensions["secretlink.script_catalogues"] = {}
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(TRANSLATIONS))
    Babel(app, locale_selector=select_locale)
    # {% trans %} blocks join their lines with single spaces, so a catalogue's msgid
    # does not depend on how a template wraps its text.
    app.jinja_env.policies["ext.i18n.trimmed"] = True
    app.jinja_env.globals.update(
        page_url=page_url,
        page_languages=languages,
        page_language=lambda: str(get_locale()),
        text_direction=text_direction,
        script_catalogue=script_catalogue,
    )
    app.after_request(add_vary)
