"""English and French: the catalogs follow the sources, and pages speak the language a reader chose.

The catalog checks run Babel's extraction in-process with the method map of `babel.cfg`, so a string
added to the code or a template without its French fails here, by name, before anyone sees English
on a French page. The page checks go through the real app.
"""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from httpx import ASGITransport, AsyncClient, Response
from starlette.applications import Starlette

from forum.config import Settings
from tests.conftest import BASE_URL, register, submit
from tests.factories import make_category, make_member

ROOT = Path(__file__).resolve().parents[2]
LOCALE = ROOT / "forum" / "locale"
FRENCH = {"Accept-Language": "fr-FR,fr;q=0.9"}
# Python's %-format placeholders (`%(name)s`, `%(count)d`) and the escaped percent sign.
PLACEHOLDER = re.compile(r"%(?:\(\w+\))?[-#0 +]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa%]")
CODE_SPAN = re.compile(r"`[^`]+`")
URL = re.compile(r"https?://[^\s)\]]+")
REFRESH = "run `make messages`, then translate it in forum/locale/fr/LC_MESSAGES/messages.po"


@dataclass(frozen=True)
class Extracted:
    msgid: str
    plural: str | None
    where: str


def _extract() -> dict[str, Extracted]:
    """Every message the sources hold today, by msgid, with where it was first seen."""
    with (ROOT / "babel.cfg").open(encoding="utf-8") as handle:
        method_map, options_map = parse_mapping_cfg(handle, "babel.cfg")  # type: ignore[no-untyped-call]
    found: dict[str, Extracted] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(ROOT, method_map, options_map):
        msgid, plural = (message, None) if isinstance(message, str) else (message[0], message[1])
        if msgid and msgid not in found:
            found[msgid] = Extracted(msgid, plural, f"{filename}:{lineno}")
    return found


def _catalog(path: Path, locale: str | None) -> Catalog:
    with path.open("rb") as handle:
        return read_po(handle, locale=locale)


def _messages(catalog: Catalog) -> dict[str, Message]:
    return {_msgid(message): message for message in catalog if message.id}


def _msgid(message: Message) -> str:
    return message.id if isinstance(message.id, str) else message.id[0]


def _forms(message: Message) -> tuple[str, ...]:
    """The msgstr, or each of its plural forms."""
    if message.string is None or isinstance(message.string, str):
        return (message.string or "",)
    return tuple(message.string)


def _listing(items: Iterable[str]) -> str:
    return "\n  ".join(items)


@pytest.fixture(scope="module")
def extracted() -> dict[str, Extracted]:
    return _extract()


def test_extraction_finds_the_pages_and_the_errors(extracted: dict[str, Extracted]) -> None:
    assert "Log in" in extracted  # a template
    assert extracted["%(count)s thread"].plural == "%(count)s threads"  # a {% trans %} block with a plural
    assert "Too many attempts." in extracted  # Python code, through `_`
    assert "Give the thread a title." in extracted  # a service's domain error, through `N_`


def test_template_matches_the_sources(extracted: dict[str, Extracted]) -> None:
    template = _messages(_catalog(LOCALE / "messages.pot", None))
    new = [f"{found.where}: {msgid!r}" for msgid, found in extracted.items() if msgid not in template]
    gone = [repr(msgid) for msgid in template if msgid not in extracted]
    assert not new, f"not in forum/locale/messages.pot; {REFRESH}:\n  {_listing(new)}"
    assert not gone, f"in messages.pot but no longer in the sources; run `make messages`:\n  {_listing(gone)}"


def test_every_message_has_a_french_translation(extracted: dict[str, Extracted]) -> None:
    catalog = _catalog(LOCALE / "fr" / "LC_MESSAGES" / "messages.po", "fr")
    french = _messages(catalog)
    untranslated = []
    for msgid, found in extracted.items():
        message = french.get(msgid)
        if message is None or message.fuzzy or not all(_forms(message)):
            untranslated.append(f"{found.where}: {msgid!r}")
        elif found.plural is not None and len(_forms(message)) != catalog.num_plurals:
            untranslated.append(f"{found.where}: {msgid!r} needs {catalog.num_plurals} plural forms")
    assert not untranslated, f"no French yet; {REFRESH}:\n  {_listing(untranslated)}"
    assert catalog.plural_expr == "(n > 1)"


def test_catalogs_hold_nothing_the_sources_dropped(extracted: dict[str, Extracted]) -> None:
    for language in ("fr", "en"):
        catalog = _catalog(LOCALE / language / "LC_MESSAGES" / "messages.po", language)
        stale = [repr(msgid) for msgid in _messages(catalog) if msgid not in extracted]
        assert not stale, f"{language}: messages no longer in the sources; run `make messages`:\n  {_listing(stale)}"
        assert not catalog.obsolete, f"{language}: obsolete entries: {list(catalog.obsolete)}"


def test_english_catalog_follows_the_sources_and_translates_nothing(extracted: dict[str, Extracted]) -> None:
    """English is the language of the msgids: its catalog lists them, with empty msgstr."""
    english = _messages(_catalog(LOCALE / "en" / "LC_MESSAGES" / "messages.po", "en"))
    missing = [f"{found.where}: {msgid!r}" for msgid, found in extracted.items() if msgid not in english]
    assert not missing, f"not in the English catalog; run `make messages`:\n  {_listing(missing)}"
    rewritten = [msgid for msgid, message in english.items() if any(_forms(message))]
    assert not rewritten, f"change the English text in the sources, not in en/messages.po: {rewritten}"


def test_french_keeps_placeholders_code_and_links() -> None:
    """`%(name)s` stays `%(name)s`, `forum serve` stays a command and the example link stays a link."""
    wrong = []
    for message in _catalog(LOCALE / "fr" / "LC_MESSAGES" / "messages.po", "fr"):
        if not message.id:
            continue
        sources = [message.id] if isinstance(message.id, str) else list(message.id)
        for form in _forms(message):
            if not form:
                continue
            # Each form answers the plural msgid when there is one (its placeholders are the singular's too).
            source = sources[-1]
            for pattern in (PLACEHOLDER, CODE_SPAN, URL):
                if sorted(pattern.findall(form)) != sorted(pattern.findall(source)):
                    wrong.append(f"{source!r} -> {form!r}: {pattern.findall(form)} != {pattern.findall(source)}")
            if form.count("*") != source.count("*"):
                wrong.append(f"{source!r} -> {form!r}: the Markdown emphasis changed")
            names = {name: 1 for name in re.findall(r"%\((\w+)\)", source)}
            try:
                form % names  # Jinja's newstyle gettext always %-formats, even with no values
            except (KeyError, TypeError, ValueError) as error:
                wrong.append(f"{form!r} cannot be formatted: {error!r}")
    assert not wrong, "\n".join(wrong)


# Through the real app ----------------------------------------------------------------------------


def _text(response: Response) -> str:
    """The page as a reader sees its characters (`d&#39;Ariane` is `d'Ariane`)."""
    return html.unescape(response.text)


def _language(response: Response) -> str:
    match = re.search(r'<html lang="([^"]+)">', response.text)
    assert match is not None, response.text[:200]
    return match.group(1)


def _assert_french(response: Response) -> None:
    assert response.status_code == 200
    assert _language(response) == "fr"
    assert ">Se connecter<" in _text(response) or ">Se déconnecter<" in _text(response)
    assert ">Log in<" not in response.text


def _assert_english(response: Response) -> None:
    assert response.status_code == 200
    assert _language(response) == "en"
    assert ">Log in<" in response.text or ">Log out<" in response.text


@pytest.fixture
async def other_client(app: Starlette) -> AsyncIterator[AsyncClient]:
    """A second browser, with its own cookies."""
    async with AsyncClient(transport=ASGITransport(app=app), base_url=BASE_URL) as http:
        yield http


async def test_browser_language_picks_the_page_language(client: AsyncClient, settings: Settings) -> None:
    await make_member(settings, "nadia")  # an empty forum sends visitors to /setup
    french = await client.get("/", headers=FRENCH)
    _assert_french(french)
    assert "Catégories" in _text(french)
    assert "Accept-Language" in french.headers["vary"]
    english = await client.get("/", headers={"Accept-Language": "de, en;q=0.5"})
    _assert_english(english)
    assert "Categories" in english.text


async def test_visitor_chooses_french_with_the_language_link(client: AsyncClient, settings: Settings) -> None:
    await make_member(settings, "nadia")
    home = await client.get("/", headers={"Accept-Language": "en"})
    _assert_english(home)
    assert 'href="/lang/fr?next=/"' in home.text
    chosen = await client.get("/lang/fr?next=/")
    assert chosen.status_code == 303
    assert chosen.headers["location"] == "/"
    _assert_french(await client.get("/", headers={"Accept-Language": "en"}))
    back = await client.get("/lang/en?next=/")
    assert back.status_code == 303
    _assert_english(await client.get("/", headers=FRENCH))


async def test_member_language_setting_wins_over_the_browser(client: AsyncClient) -> None:
    client.headers["Accept-Language"] = "en"
    await register(client, "amelie")
    _assert_english(await client.get("/"))
    saved = await submit(client, "/settings", {"action": "preferences", "language": "fr", "theme": ""})
    assert saved.status_code == 303
    settings_page = await client.get("/settings")
    _assert_french(settings_page)
    assert "Préférences" in _text(settings_page)
    _assert_french(await client.get("/"))


async def test_refused_registration_explains_in_french(client: AsyncClient, other_client: AsyncClient) -> None:
    await register(other_client, "camille")
    client.headers["Accept-Language"] = FRENCH["Accept-Language"]
    refused = await submit(
        client, "/register", {"username": "Camille", "email": "c2@example.org", "password": "x" * 12}
    )
    assert refused.status_code == 409
    assert _language(refused) == "fr"
    page = _text(refused)
    assert "«\u00a0Camille\u00a0» est déjà pris\u00a0; choisissez un autre nom d'utilisateur." in page
    assert "Nom d'utilisateur" in page
    assert "already taken" not in page


async def test_refused_form_token_explains_in_french(client: AsyncClient) -> None:
    client.headers["Accept-Language"] = FRENCH["Accept-Language"]
    await client.get("/register")
    refused = await client.post(
        "/register",
        data={"username": "dominique", "email": "d@example.org", "password": "x" * 12, "csrf_token": "forged"},
        headers={"Origin": BASE_URL},
    )
    assert refused.status_code == 403
    assert "Le formulaire a expiré ou provient d'un autre site." in _text(refused)


async def test_error_pages_speak_the_reader_language(client: AsyncClient, settings: Settings) -> None:
    await make_member(settings, "nadia")
    _assert_english(await client.get("/", headers={"Accept-Language": "en"}))
    browser = {**FRENCH, "Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    nowhere = await client.get("/no/such/address", headers=browser)
    assert nowhere.status_code == 404
    assert _language(nowhere) == "fr"
    assert "Il n'y a rien à cette adresse." in _text(nowhere)
    missing = await client.get("/t/999", headers=browser)  # a service's NotFound
    assert missing.status_code == 404
    assert "Ce fil n'existe pas." in _text(missing)


async def _start_threads(client: AsyncClient, settings: Settings, counts: dict[str, int]) -> list[str]:
    """Categories holding `counts` threads each, started by a member; returns the threads' paths."""
    for slug in counts:
        await make_category(settings, slug, slug.capitalize())
    await register(client, "gaston")
    paths = []
    for slug, count in counts.items():
        for number in range(count):
            started = await submit(client, f"/c/{slug}/new", {"title": f"{slug} {number}", "body": "Bonjour"})
            assert started.status_code == 303, started.text
            paths.append(started.headers["location"])
    client.cookies.clear()
    return paths


async def test_thread_counts_agree_in_number(client: AsyncClient, settings: Settings) -> None:
    await _start_threads(client, settings, {"aucun": 0, "un": 1, "deux": 2})
    english = await client.get("/", headers={"Accept-Language": "en"})
    _assert_english(english)
    for shown in ("0 threads", "1 thread", "2 threads", "0 replies"):
        assert f"<span>{shown}</span>" in english.text
    french = await client.get("/", headers=FRENCH)
    _assert_french(french)
    # French puts zero in the singular: plural=(n > 1).
    for shown in ("0 fil", "1 fil", "2 fils", "0 réponse"):
        assert f"<span>{shown}</span>" in _text(french)


async def test_cached_thread_page_keeps_each_visitor_language(
    client: AsyncClient, other_client: AsyncClient, settings: Settings
) -> None:
    [thread] = await _start_threads(client, settings, {"general": 1})
    french = await client.get(thread, headers=FRENCH)
    _assert_french(french)
    assert "pour répondre." in _text(french)
    english = await other_client.get(thread, headers={"Accept-Language": "en"})
    _assert_english(english)
    assert "to reply." in english.text
    assert english.headers["etag"] != french.headers["etag"]
    # Both are now cached; each language is still served to its own reader.
    french_again = await other_client.get(thread, headers=FRENCH)
    english_again = await client.get(thread, headers={"Accept-Language": "en"})
    _assert_french(french_again)
    _assert_english(english_again)
    assert french_again.headers["etag"] == french.headers["etag"]
    assert english_again.headers["etag"] == english.headers["etag"]
    revalidated = await client.get(thread, headers={**FRENCH, "If-None-Match": french.headers["etag"]})
    assert revalidated.status_code == 304
