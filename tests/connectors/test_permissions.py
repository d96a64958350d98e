"""Who reads a connector's documents: the group mapping, least permissive until known, changed without re-embedding."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.connectors import services
from assistant.connectors.models import ConnectorItem
from assistant.connectors.sync import MANAGERS_ONLY_GROUP
from ingest.models import Document
from tests.connectors.conftest import actions, folder_connector, hr_and_public_policies, names_found, run, write
from tests.factories import GroupFactory

pytestmark = pytest.mark.django_db


def test_documents_are_restricted_by_the_mapping_and_unmapped_ones_to_managers(
    source: Path, collection, readers, settings
) -> None:
    settings.RETRIEVAL_MIN_RELEVANCE = -1.0
    write(source, "board/minutes.md", "# Minutes\n\nThe board's policy of the company on mergers.")
    hr_and_public_policies(source, collection)

    assert names_found(readers["outsider"], collection) == {"holidays.md"}
    assert names_found(readers["member"], collection) == {"holidays.md", "salaries.md"}
    assert names_found(readers["manager"], collection) == {"holidays.md", "salaries.md", "minutes.md"}
    minutes = Document.objects.get(name="minutes.md")
    assert [g.name for g in minutes.restricted_to_groups.all()] == [MANAGERS_ONLY_GROUP]


def test_a_changed_mapping_or_a_move_re_restricts_without_re_embedding(
    source: Path, collection, readers, settings
) -> None:
    settings.RETRIEVAL_MIN_RELEVANCE = -1.0
    connector = hr_and_public_policies(source, collection)
    chunks = dict(Document.objects.values_list("name", "chunks__pk"))

    # The share's owner opens hr/ to everyone: the mapping changes.
    services.connector_change(connector=connector, settings={"groups": [{"glob": "**", "groups": ["*"]}]})
    report = run(connector)
    assert actions(report) == {"hr/salaries.md": "permissions", "public/holidays.md": "unchanged"}
    assert names_found(readers["outsider"], collection) == {"holidays.md", "salaries.md"}

    # Back to restricted, and a public file moved into hr/: renamed and restricted, not re-embedded.
    services.connector_change(
        connector=connector,
        settings={"groups": [{"glob": "hr/**", "groups": ["hr"]}, {"glob": "public/**", "groups": ["*"]}]},
    )
    (source / "public" / "holidays.md").rename(source / "hr" / "holidays.md")
    report = run(connector)
    assert actions(report) == {"hr/salaries.md": "permissions", "hr/holidays.md": "renamed"}
    assert names_found(readers["outsider"], collection) == set()
    assert names_found(readers["member"], collection) == {"holidays.md", "salaries.md"}
    assert dict(Document.objects.values_list("name", "chunks__pk")) == chunks
    assert sorted(ConnectorItem.objects.values_list("access", flat=True)) == [["hr"], ["hr"]]


def test_a_group_that_does_not_exist_yet_keeps_the_file_with_the_managers(source: Path, collection, readers) -> None:
    write(source, "legal/contract.md", "# Contract\n\nTerms.")
    connector = folder_connector(collection, source, groups=[{"glob": "legal/**", "groups": ["legal"]}])
    run(connector)
    document = Document.objects.get(name="contract.md")
    assert [g.name for g in document.restricted_to_groups.all()] == [MANAGERS_ONLY_GROUP]
    legal = GroupFactory.create(name="legal")
    report = run(connector)
    assert actions(report) == {"legal/contract.md": "permissions"}
    assert list(document.restricted_to_groups.all()) == [legal]
