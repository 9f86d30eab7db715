"""The load generator of ``edgeseq bench --serve``: runs in its own process, opens many
WebSocket streams to a server, sends frames and times every reply.

Closed loop (``interval`` None): each connection sends its next message when the reply
to the last one arrived — the server's throughput. Open loop (``interval`` seconds): each
connection sends on a fixed schedule (phases spread over the interval), so latency is
measured at a given offered rate.

Each connection runs websockets' sans-I/O protocol from asyncio callbacks (no task, queue
or future per message): the clients share the server's cores, so the less CPU they take
per message, the less they hold down the throughput the benchmark reports. Once the
stream is ready, a connection frames its own messages (a fresh random mask each, as
RFC 6455 asks of a client) and counts whole reply frames itself; anything else the server
sends (a ping, the close) goes, whole, to websockets' protocol. Each process reports its
CPU per message (``cpu_s`` / ``sent``).
"""

from __future__ import annotations

import asyncio
import os
import struct
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Load", "run_load"]


@dataclass(frozen=True)
class Load:
    """What one client process does."""

    url: str
    connections: int
    frames_per_message: int
    features: int
    duration: float  # seconds of sending, after ``warmup``
    warmup: float = 0.5
    interval: float | None = None  # open loop: seconds between a connection's messages
    seed: int = 0


class _Stream(asyncio.Protocol):
    """One connection driven by websockets' sans-I/O protocol, straight from asyncio's
    callbacks: a reply arriving sends the next message (closed loop) in the same callback,
    so the client adds no task, future or queue per message to the server's CPU budget."""

    def __init__(self, load: Load, index: int, out: list[int]) -> None:
        from websockets.client import ClientProtocol
        from websockets.frames import apply_mask
        from websockets.uri import parse_uri

        self.load, self.out = load, out
        self.proto = ClientProtocol(parse_uri(load.url), max_size=None)
        rng = np.random.default_rng(load.seed * 100_003 + index)
        shape = (load.frames_per_message, load.features)
        self.payloads = [rng.standard_normal(shape).astype("<f4").tobytes() for _ in range(8)]
        self.phase = (index / max(load.connections, 1)) * (load.interval or 0.0)
        self.ready: asyncio.Future = asyncio.get_running_loop().create_future()
        self.done: asyncio.Future = asyncio.get_running_loop().create_future()
        self.sent = 0
        self.t0 = 0
        self.measure_from = self.t_end = 0.0
        self.ending = False
        self.apply_mask = apply_mask
        self.framing = False  # frames parsed and built here (see the module docstring)
        self.buf = b""
        n = len(self.payloads[0])  # a masked binary frame's header for this payload size
        if n < 126:
            self.head = bytes((0x82, 0x80 | n))
        elif n < 65536:
            self.head = bytes((0x82, 0x80 | 126)) + struct.pack("!H", n)
        else:
            self.head = bytes((0x82, 0x80 | 127)) + struct.pack("!Q", n)

    # asyncio callbacks
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.proto.send_request(self.proto.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        from websockets.protocol import State

        from edgeseq.client._wsframes import at_frame_start

        if self.framing:
            self._frames(data)
            return
        self._to_protocol(data)
        if self.ready.done() and self.proto.state is State.OPEN:
            self.framing = at_frame_start(self.proto)

    def _to_protocol(self, data: bytes) -> None:
        from websockets.frames import Opcode

        self.proto.receive_data(data)
        self._flush()
        for event in self.proto.events_received():
            if getattr(event, "opcode", None) in (Opcode.TEXT, Opcode.BINARY):
                self._message()
            # else: the handshake response, pings, close

    def _frames(self, data: bytes) -> None:
        """Whole server frames: text/binary replies counted here, the rest to websockets."""
        buf = self.buf + data if self.buf else data
        pos, end_of_data = 0, len(buf)
        while end_of_data - pos >= 2:
            first, n, head = buf[pos], buf[pos + 1], pos + 2
            if n & 0x80:  # a masked server frame: websockets refuses it
                self.framing, self.buf = False, b""
                self._to_protocol(buf[pos:])
                return
            if n == 126:
                if end_of_data - pos < 4:
                    break
                n, head = struct.unpack_from("!H", buf, head)[0], head + 2
            elif n == 127:
                if end_of_data - pos < 10:
                    break
                n, head = struct.unpack_from("!Q", buf, head)[0], head + 8
            end = head + n
            if end > end_of_data:
                break
            if first in (0x81, 0x82):
                self._message()
            else:
                from websockets.protocol import State

                self._to_protocol(buf[pos:end])
                if self.proto.state is not State.OPEN:
                    self.framing, self.buf = False, b""
                    if end < end_of_data:
                        self._to_protocol(buf[end:])
                    return
            pos = end
        self.buf = buf[pos:] if pos < end_of_data else b""

    def _message(self) -> None:
        if not self.ready.done():
            self.ready.set_result(None)  # `ready`
        elif self.ending:
            if not self.done.done():
                self.done.set_result(self.sent)
        else:
            self._reply()

    def connection_lost(self, exc: Exception | None) -> None:
        for fut in (self.ready, self.done):
            if not fut.done():
                fut.set_exception(exc or ConnectionError("the server closed the connection"))

    # the load
    def start(self, t_start: float) -> None:
        loop = asyncio.get_running_loop()
        self.measure_from = t_start + self.load.warmup
        self.t_end = self.measure_from + self.load.duration
        self.next_at = t_start + self.phase
        loop.call_at(self.next_at, self._send)

    def _send(self) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() >= self.t_end:
            self.ending = True
            self.proto.send_text(b'{"type": "end"}')
            self._flush()
            return
        self.t0 = time.perf_counter_ns()
        payload = self.payloads[self.sent % len(self.payloads)]
        if self.framing:
            mask = os.urandom(4)
            self.transport.write(self.head + mask + self.apply_mask(payload, mask))
            return
        self.proto.send_binary(payload)
        self._flush()

    def _reply(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now >= self.measure_from:
            self.out.append(time.perf_counter_ns() - self.t0)
        self.sent += 1
        if self.load.interval is None:
            self._send()
        else:
            self.next_at += self.load.interval
            loop.call_at(max(self.next_at, now), self._send)

    def _flush(self) -> None:
        for chunk in self.proto.data_to_send():
            if chunk:
                self.transport.write(chunk)

    def close(self) -> None:
        from websockets.protocol import State

        if self.proto.state is State.OPEN:  # the server usually closed it after `end`
            self.proto.send_close()
            self._flush()
        self.transport.close()


async def _open(load: Load, index: int, out: list[int]) -> _Stream:
    from websockets.uri import parse_uri

    uri = parse_uri(load.url)
    loop = asyncio.get_running_loop()
    _, stream = await loop.create_connection(lambda: _Stream(load, index, out), uri.host, uri.port)
    await asyncio.wait_for(stream.ready, 120)
    return stream


async def _run(load: Load, barrier: Any) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    latencies: list[int] = []
    streams = await asyncio.gather(*(_open(load, i, latencies) for i in range(load.connections)))
    await loop.run_in_executor(None, barrier.wait, 300)  # every process connected: go
    t_start = loop.time() + 0.05
    cpu = time.process_time()
    for s in streams:
        s.start(t_start)
    sent = sum(await asyncio.gather(*(s.done for s in streams)))
    cpu = time.process_time() - cpu
    for s in streams:
        s.close()
    return {
        "latencies_ns": latencies,
        "frames": len(latencies) * load.frames_per_message,
        "cpu_s": cpu,  # this process's CPU while sending (warm-up included)
        "sent": sent,  # messages answered, warm-up included
    }


def run_load(load: Load, results: Any, barrier: Any) -> None:
    """Process entry point: connect, wait at ``barrier`` for every other client process,
    run ``load``, and put its result (or the error) on ``results``."""
    try:
        results.put(asyncio.run(_run(load, barrier)))
    except BaseException as exc:  # reported by the parent
        barrier.abort()
        results.put({"error": f"{type(exc).__name__}: {exc}"})
