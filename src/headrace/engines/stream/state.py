"""A partition's saved state: its watermark and each view's emitted bound, as bytes.

Layout: a 4-byte big-endian header length, a JSON header, then one Arrow IPC file per view
(lengths in the header; empty since the views' rows are saved as a changelog, see
:mod:`headrace.storage.checkpoints`). Arrow keeps types exact (no float text round trips).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

__all__ = ["PartitionState", "decode_state", "encode_state"]


@dataclass(frozen=True)
class PartitionState:
    """What a checkpoint keeps of one partition besides its position."""

    max_event: datetime | None
    """The newest event time seen in the partition (its watermark + the disorder)."""
    emitted: Mapping[str, datetime | None]
    """Per view: outputs below this time were emitted."""
    rows: Mapping[str, bytes]
    """Per view: the kept rows (Arrow IPC)."""


def encode_state(state: PartitionState) -> bytes:
    """``state`` as bytes (see the module docs)."""
    names = list(state.rows)
    header = {
        "max_event": state.max_event.isoformat() if state.max_event else None,
        "emitted": {k: (v.isoformat() if v else None) for k, v in state.emitted.items()},
        "views": [[name, len(state.rows[name])] for name in names],
    }
    head = json.dumps(header).encode()
    return struct.pack(">I", len(head)) + head + b"".join(state.rows[n] for n in names)


def decode_state(data: bytes) -> PartitionState:
    """The state :func:`encode_state` wrote."""
    (size,) = struct.unpack(">I", data[:4])
    header = json.loads(data[4 : 4 + size])
    rows: dict[str, bytes] = {}
    at = 4 + size
    for name, length in header["views"]:
        rows[name] = data[at : at + length]
        at += length
    stamp = header["max_event"]
    return PartitionState(
        max_event=datetime.fromisoformat(stamp) if stamp else None,
        emitted={
            k: (datetime.fromisoformat(v) if v else None) for k, v in header["emitted"].items()
        },
        rows=rows,
    )
