"""The embedded broker: kombu's file-system transport, with messages that appear whole.

kombu's transport writes a message straight under its final name and takes it with
``shutil.move``, which ignores the writer's advisory lock: a consumer polling while
the web process (or beat) is still writing can take a half-written file, fail to
decode it and lose the message. Here a message is written under a name no
consumer looks for and renamed into place, and a taken message is moved within the
broker folder (a rename, never a copy to another file system) before it is read.
"""

from __future__ import annotations

import os
import uuid
from queue import Empty
from time import monotonic_ns
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads


class Channel(filesystem.Channel):
    # kombu's own annotations of _put disagree between its base classes.
    def _put(self, queue: str, payload: dict[str, Any], **kwargs: Any) -> None:  # type: ignore[override]
        # Names sort in the order messages were sent (kombu's own are by the millisecond).
        name = f"{monotonic_ns():020d}_{uuid.uuid4()}.{queue}.msg"
        # A leading dot: ``_get`` matches ``<anything>.<queue>.msg`` after the first dot.
        partial = os.path.join(self.data_folder_out, f".{name}.part")
        try:
            with open(partial, "wb") as handle:
                handle.write(str_to_bytes(dumps(payload)))
            os.replace(partial, os.path.join(self.data_folder_out, name))
        except OSError as exc:
            raise ChannelError(f"Cannot add message {name!r} to {self.data_folder_out!r}") from exc

    def _get(self, queue: str, timeout: float | None = None) -> Any:
        wanted = f"{queue}.msg"
        taken_dir = self.processed_folder
        for name in sorted(os.listdir(self.data_folder_in)):
            if name.startswith(".") or name.partition(".")[2] != wanted:
                continue
            taken = os.path.join(taken_dir, f"{uuid.uuid4().hex}-{name}")
            try:
                os.replace(os.path.join(self.data_folder_in, name), taken)
            except OSError:  # another consumer took it first
                continue
            try:
                with open(taken, "rb") as handle:
                    payload = handle.read()
                if not self.store_processed:
                    os.remove(taken)
            except OSError as exc:
                raise ChannelError(f"Cannot read message {taken!r}") from exc
            return loads(bytes_to_str(payload))
        raise Empty()


class Transport(filesystem.Transport):
    Channel = Channel
