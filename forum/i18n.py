"""Translations: the English and French catalogs, the language of the current request, and negotiation.

Catalogs are read from the `.po` files at start-up (compiled in memory, so there is no build step);
the language of a request lives in a context variable that the templates' gettext reads.
"""

from __future__ import annotations

import gettext
from contextvars import ContextVar
from io import BytesIO
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LOCALE_DIR = Path(__file__).parent / "locale"
LANGUAGES = {"en": "English", "fr": "Français"}
DEFAULT_LANGUAGE = "en"

_ENGLISH = gettext.NullTranslations()
_current: ContextVar[gettext.NullTranslations | None] = ContextVar("translations", default=None)
_current_language: ContextVar[str] = ContextVar("language", default=DEFAULT_LANGUAGE)


class Catalogs:
    """The loaded translations, one per language."""

    def __init__(self, locale_dir: Path = LOCALE_DIR) -> None:
        self._translations: dict[str, gettext.NullTranslations] = {"en": gettext.NullTranslations()}
        for language in LANGUAGES:
            po = locale_dir / language / "LC_MESSAGES" / "messages.po"
            if po.exists():
                with po.open("rb") as handle:
                    catalog = read_po(handle, locale=language)
                buffer = BytesIO()
                write_mo(buffer, catalog)
                buffer.seek(0)
                self._translations[language] = gettext.GNUTranslations(buffer)

    def translate(self, language: str, message: str) -> str:
        """`message` in `language`, for code that runs outside a request's context."""
        return self._translations.get(language, self._translations["en"]).gettext(message)

    def activate(self, language: str) -> None:
        """Make `language` the current request's language (a context variable: per task)."""
        language = language if language in LANGUAGES else DEFAULT_LANGUAGE
        _current.set(self._translations.get(language, self._translations["en"]))
        _current_language.set(language)


def gettext_(message: str) -> str:
    return (_current.get() or _ENGLISH).gettext(message)


def ngettext_(singular: str, plural: str, n: int) -> str:
    return (_current.get() or _ENGLISH).ngettext(singular, plural, n)


def current_language() -> str:
    return _current_language.get()


def negotiate(accept_language: str | None) -> str:
    """The best of our languages for an `Accept-Language` header, by quality."""
    if not accept_language:
        return DEFAULT_LANGUAGE
    choices: list[tuple[float, int, str]] = []
    for index, part in enumerate(accept_language.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        language = tag.strip().replace("_", "-").split("-")[0].lower()
        if language in LANGUAGES and quality > 0:
            choices.append((-quality, index, language))
    return min(choices)[2] if choices else DEFAULT_LANGUAGE
