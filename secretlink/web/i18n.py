"""The pages' language: Flask-Babel catalogues, chosen per request, never remembered.

The language is `?lang=` when it names a supported language, else the best match for
the browser's Accept-Language, else English. Nothing is stored: no cookie (a language
cookie would mark a sender's device), no session. Pages say `Vary: Accept-Language`,
and every link between pages keeps `?lang=` when the request had it (`page_url`).

Catalogues live in secretlink/translations/<lang>/LC_MESSAGES/messages.po, compiled
to the committed messages.mo beside it (`make translations`; README, "Languages").
"""

from importlib.resources import files
from pathlib import Path

from babel import Locale
from flask import Flask, Response, current_app, request, url_for
from flask_babel import Babel, get_locale

# Every supported language and its name in that language, for the switcher.
LANGUAGES: dict[str, str] = {
    "en": "English",
    "es": "Español",
    "de": "Deutsch",
    "ar": "العربية",
}
DEFAULT_LANGUAGE = "en"
TRANSLATIONS = Path(str(files("secretlink"))) / "translations"


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


def add_vary(response: Response) -> Response:
    if response.mimetype == "text/html":
        response.vary.add("Accept-Language")
    return response


def install(app: Flask) -> None:
    app.extensions["secretlink.languages"] = dict(LANGUAGES)
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
    )
    app.after_request(add_vary)
