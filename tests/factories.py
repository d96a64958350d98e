from __future__ import annotations

import io
from typing import Any

import factory
from django.contrib.auth.models import Group, User

from ingest import pipeline, services
from ingest.models import Collection, Document


class UserFactory(factory.django.DjangoModelFactory[User]):
    class Meta:
        model = User

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("pw-for-tests")


class GroupFactory(factory.django.DjangoModelFactory[Group]):
    class Meta:
        model = Group

    name = factory.Sequence(lambda n: f"group{n}")


class CollectionFactory(factory.django.DjangoModelFactory[Collection]):
    class Meta:
        model = Collection

    name = factory.Sequence(lambda n: f"Collection {n}")


class DocumentFactory(factory.Factory[Document]):
    """A document uploaded as every surface uploads one (``services.document_upload``), left queued.

    ``content`` (bytes or text; the name by default) is the file, ``groups`` its
    restriction, ``user`` the uploader. With ``processed=True`` it goes through the
    pipeline here (``pipeline.documents_process_here``: the files found inside it too)
    and the row is read back.
    """

    class Meta:
        model = Document

    collection = factory.SubFactory(CollectionFactory)
    name = factory.Sequence(lambda n: f"document-{n}.txt")
    content: Any = factory.LazyAttribute(lambda o: o.name.encode())
    groups: Any = ()
    user: Any = None
    parent: Any = None
    processed = False

    @classmethod
    def _create(cls, model_class: type[Document], *args: Any, **kwargs: Any) -> Document:
        content = kwargs["content"]
        result = services.document_upload(
            collection=kwargs["collection"],
            name=kwargs["name"],
            fileobj=io.BytesIO(content.encode() if isinstance(content, str) else content),
            user=kwargs["user"],
            parent=kwargs["parent"],
            restrict_to_groups=kwargs["groups"],
            enqueue=False,
        )
        if not kwargs["processed"]:
            return result.document
        pipeline.documents_process_here(document_ids=[result.document.pk], together=True)
        return Document.objects.get(pk=result.document.pk)
