"""Where websockets' sans-I/O parser stands: whether framing may move to the caller.

The server's socket (``edgeseq.serve._socket``) and the benchmark's load generator parse
the common WebSocket frames themselves once a connection is open, and hand every other
frame, whole, to websockets' protocol. That is only sound from a frame boundary.
"""

from __future__ import annotations

from typing import Any

__all__ = ["at_frame_start"]


def at_frame_start(protocol: Any) -> bool:
    """Whether websockets' parser waits at a frame boundary with nothing buffered (then
    framing may move to the caller); False, and websockets keeps parsing, when unsure."""
    if protocol.reader.buffer:
        return False
    gen = protocol.parser
    while getattr(gen, "gi_yieldfrom", None) is not None:
        gen = gen.gi_yieldfrom
    return getattr(getattr(gen, "gi_code", None), "co_name", "") == "at_eof"
