"""The interface in English and German, chosen per user.

A signed-in user's choice is stored and wins on every browser; anonymous pages follow
Accept-Language; the page scripts get their texts from the JavaScript catalog; the
committed catalogs are complete and their compiled .mo files match the .po files.
"""

from __future__ import annotations

import gettext
import json
import shutil
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.management import call_command
from django.test import AsyncClient, Client
from django.urls import reverse
from django.utils import translation

from assistant.accounts.language import language_of
from assistant.accounts.models import Preference
from assistant.accounts.services import collection_grant
from assistant.chat import services
from assistant.chat.llm import LLMClient, LLMError
from tests.factories import CollectionFactory, UserFactory
from tests.support.processes import free_port

LOCALE = Path(settings.BASE_DIR) / "assistant" / "locale"
CATALOGS = [LOCALE / "de" / "LC_MESSAGES" / f"{domain}.po" for domain in ("django", "djangojs")]


@pytest.fixture
def reader(db):
    user = UserFactory.create(username="leser")
    collection = CollectionFactory.create(name="Handbuch")
    collection_grant(collection=collection, user=user, role="read")
    return user


def _choose(client: Client, language: str) -> None:
    response = client.post(reverse("accounts:settings"), {"language": language})
    assert response.status_code == 302


def test_a_user_who_chooses_german_gets_the_chat_and_nav_in_german(client, reader) -> None:
    client.force_login(reader)
    assert "Conversations" in client.get("/").content.decode()
    _choose(client, "de")
    assert language_of(user=reader) == "de"
    page = client.get("/").content.decode()
    assert '<html lang="de">' in page
    for german in ("Gespräche", "Sammlungen", "Abmelden (leser)", "Neues Gespräch", "Einstellungen"):
        assert german in page, german
    assert "Conversations" not in page and "Sign out" not in page
    conversation = services.conversation_start(user=reader, collection=reader.collection_grants.get().collection)
    page = client.get(reverse("chat:conversation", args=[conversation.pk])).content.decode()
    assert "Ihre Frage" in page and ">Senden</button>" in page and "Heute" in page
    assert f"<h1>Gespräch {conversation.pk}</h1>" in page  # an untitled conversation's name
    # The settings page shows the choice, in German.
    settings_page = client.get(reverse("accounts:settings")).content.decode()
    assert "Sprache der Oberfläche" in settings_page and '<option value="de" selected>' in settings_page


def test_the_choice_follows_the_user_to_another_browser_and_beats_its_language(reader) -> None:
    first = Client()
    first.force_login(reader)
    _choose(first, "de")
    # Another browser that asks for English and carries an English language cookie.
    other = Client(HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9")
    other.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    assert "Anmelden" not in other.get(reverse("login")).content.decode()
    other.force_login(reader)
    page = other.get("/").content.decode()
    assert "Gespräche" in page and "Conversations" not in page
    # Handing the choice back to the browser: English again there.
    _choose(other, "")
    assert Preference.objects.get(user=reader).language == ""
    assert "Conversations" in other.get("/").content.decode()


def test_an_unknown_language_is_refused(client, reader) -> None:
    client.force_login(reader)
    response = client.post(reverse("accounts:settings"), {"language": "xx"})
    assert response.status_code == 200 and language_of(user=reader) == ""


def test_the_sign_in_page_follows_the_browser_language(db) -> None:
    german = Client(HTTP_ACCEPT_LANGUAGE="de-DE,de;q=0.9,en;q=0.5").get(reverse("login")).content.decode()
    assert "<h1>Anmelden</h1>" in german and "Benutzername" in german and "Passwort" in german
    english = Client(HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9").get(reverse("login")).content.decode()
    assert "<h1>Sign in</h1>" in english and "User name" in english


def test_the_javascript_catalog_serves_the_users_language(client, reader) -> None:
    client.force_login(reader)
    _choose(client, "de")
    response = client.get(reverse("javascript-catalog"))
    assert response.status_code == 200 and "javascript" in response["Content-Type"]
    body = response.content.decode()
    for german in ("Kopieren", "Erneut versuchen", "Bearbeiten und erneut senden"):
        assert json.dumps(german)[1:-1] in body or german in body, german
    # The chat page loads it as a file before its module (no inline script).
    conversation = services.conversation_start(user=reader, collection=reader.collection_grants.get().collection)
    page = client.get(reverse("chat:conversation", args=[conversation.pk])).content.decode()
    catalog = page.index(f'<script src="{reverse("javascript-catalog")}"></script>')
    assert catalog < page.index("assistant/chat.js") and "<script>" not in page


def test_a_streamed_answer_speaks_the_askers_language(client, reader, settings) -> None:
    """The stream is read after the middleware returned: it must still be German."""
    settings.LLM_BASE_URL = f"http://127.0.0.1:{free_port()}/v1"
    client.force_login(reader)
    _choose(client, "de")
    conversation = services.conversation_start(user=reader, collection=reader.collection_grants.get().collection)
    asker = AsyncClient()

    async def ask() -> list[dict]:
        await asker.aforce_login(reader)
        response = await asker.post(reverse("chat:ask", args=[conversation.pk]), {"question": "Reisekosten?"})
        body = b"".join([part async for part in response.streaming_content]).decode()  # type: ignore[attr-defined]
        return [json.loads(line[5:]) for line in body.splitlines() if line.startswith("data:")]

    events = async_to_sync(ask)()
    answer = "".join(e["text"] for e in events if e["event"] == "token")
    assert answer == "Ich habe in den Dokumenten dieser Sammlung nichts dazu gefunden."


def test_model_server_errors_are_told_in_the_users_language() -> None:
    client = LLMClient(base_url=f"http://127.0.0.1:{free_port()}/v1", model="m", connect_timeout=1)
    with translation.override("de"), pytest.raises(LLMError, match="ist nicht erreichbar"):
        async_to_sync(client.models)()


# --- The catalogs -----------------------------------------------------------------------


def _unquote(text: str) -> str:
    return json.loads(text)  # a .po string is a C string; JSON reads the escapes used here


def read_po(path: Path) -> dict[object, str]:
    """A .po file's translations: msgid -> msgstr, (msgid, n) -> msgstr[n] for plurals.

    Contexts are keyed "context\\x04msgid" as gettext does; fuzzy entries are kept
    with "#fuzzy" prefixed so a test sees them. Obsolete (``#~``) entries are skipped.
    """
    entries: dict[object, str] = {}
    for block in path.read_text(encoding="utf-8").split("\n\n"):
        fields: dict[str, str] = {}
        key = ""
        fuzzy = False
        for line in block.splitlines():
            if line.startswith("#,") and "fuzzy" in line:
                fuzzy = True
            if line.startswith("#") or not line.strip():
                continue
            if line.startswith('"'):
                fields[key] += _unquote(line)
            else:
                key, _, value = line.partition(" ")
                fields[key] = _unquote(value)
        if "msgid" not in fields or fields["msgid"] == "":
            continue
        msgid = fields["msgid"]
        if "msgctxt" in fields:
            msgid = f"{fields['msgctxt']}\x04{msgid}"
        mark = "#fuzzy" if fuzzy else ""
        if "msgid_plural" in fields:
            for name, value in fields.items():
                if name.startswith("msgstr["):
                    entries[(msgid, int(name[7:-1]))] = mark + value
        else:
            entries[msgid] = mark + fields.get("msgstr", "")
    return entries


@pytest.mark.parametrize("po", CATALOGS, ids=lambda p: p.name)
def test_every_german_string_is_translated(po: Path) -> None:
    entries = read_po(po)
    assert entries
    untranslated = [key for key, value in entries.items() if not value or value.startswith("#fuzzy")]
    assert untranslated == []


@pytest.mark.parametrize("po", CATALOGS, ids=lambda p: p.name)
def test_the_committed_mo_files_are_compiled_from_the_po_files(po: Path) -> None:
    """No gettext needed: the .mo is read back with Python's own reader and compared."""
    with po.with_suffix(".mo").open("rb") as mo:
        compiled = gettext.GNUTranslations(mo)
    catalog = {key: value for key, value in compiled._catalog.items() if key != ""}  # type: ignore[attr-defined]
    assert catalog == read_po(po), f"recompile: make messages ({po.name})"


def test_every_marked_string_is_in_the_german_catalogs(tmp_path: Path, settings) -> None:
    """Extracts the strings again (as ``make messages`` does) and finds each translated."""
    if shutil.which("xgettext") is None or shutil.which("msgmerge") is None:
        pytest.skip("gettext is not installed (.ci/system-packages.sh installs it)")
    base = Path(settings.BASE_DIR)
    for tree in ("assistant", "templates", "ingest"):
        shutil.copytree(base / tree, tmp_path / tree, ignore=shutil.ignore_patterns("locale", "__pycache__", "*.pyc"))
    (tmp_path / "assistant" / "locale").mkdir()
    settings.LOCALE_PATHS = [tmp_path / "assistant" / "locale"]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        for domain in ("django", "djangojs"):
            call_command("makemessages", locale=["de"], domain=domain, no_location=True, verbosity=0)
    for po in CATALOGS:
        extracted = read_po(tmp_path / "assistant" / "locale" / "de" / "LC_MESSAGES" / po.name)
        missing = sorted(str(key) for key in extracted.keys() - read_po(po).keys())
        assert missing == [], f"{po.name}: run make messages and translate these"
