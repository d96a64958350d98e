"""The embedded broker never hands out a message that is still being written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from kombu import Connection


@pytest.fixture
def connection(tmp_path: Path):
    for sub in ("queue", "processed", "control"):
        (tmp_path / sub).mkdir()
    options = {
        "data_folder_in": str(tmp_path / "queue"),
        "data_folder_out": str(tmp_path / "queue"),
        "processed_folder": str(tmp_path / "processed"),
        "store_processed": False,
        "control_folder": str(tmp_path / "control"),
    }
    with Connection("filesystem://", transport="assistant.broker:Transport", transport_options=options) as conn:
        yield conn


def test_messages_go_through_in_order_and_leave_nothing_behind(connection, tmp_path: Path) -> None:
    queue = connection.SimpleQueue("work")
    for n in range(5):
        queue.put({"n": n})
    received = []
    for _ in range(5):
        message = queue.get(timeout=1)
        received.append(message.payload["n"])
        message.ack()
    assert received == [0, 1, 2, 3, 4]
    queue.close()
    assert os.listdir(tmp_path / "queue") == []
    assert os.listdir(tmp_path / "processed") == []


def test_a_message_being_written_is_not_taken(connection, monkeypatch) -> None:
    from queue import Empty

    from assistant import broker

    channel = connection.default_channel
    channel.queue_declare("work")
    seen_while_writing = []
    real_replace = os.replace

    def consumer_polls_first(src, dst):
        # The bytes are on disk under the partial name; a consumer polls right now.
        try:
            seen_while_writing.append(channel._get("work"))
        except Empty:
            seen_while_writing.append(None)
        real_replace(src, dst)

    monkeypatch.setattr(broker.os, "replace", consumer_polls_first)
    channel._put("work", {"body": "whole"})
    monkeypatch.undo()
    assert seen_while_writing == [None]
    assert channel._get("work") == {"body": "whole"}


@pytest.mark.embedded
def test_the_project_uses_it_for_the_embedded_broker(settings) -> None:
    from assistant.celery import app

    if not settings.CELERY_BROKER_URL.startswith("filesystem://"):
        pytest.skip("a real broker is configured for this run")
    assert type(app.connection_for_write().transport).__module__ == "assistant.broker"
