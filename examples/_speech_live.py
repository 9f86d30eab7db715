"""Live streaming for examples/10_transcription.py: 20 ms microphone packets through a
StreamingPredictor, a StreamPool of several microphones, and ``edgeseq serve``."""

from __future__ import annotations

import re
import sys
import time

import numpy as np

CHUNK = 320  # samples per microphone packet: 20 ms at 16 kHz


def stream(predictor, samples: np.ndarray):
    """Feed ``samples`` in 20 ms packets; return emissions, the decoder and, for each
    emitted step, the time (s) its packet arrived."""
    from edgeseq.runtime.ctc import GreedyCTC

    predictor.reset()
    ctc = GreedyCTC.from_contract(predictor.contract)
    outs, arrival = [], []
    for at in range(0, len(samples), CHUNK):
        e = predictor.step(samples[at : at + CHUNK])
        ctc.push(e)
        outs.append(e)
        arrival += [(at + CHUNK) / 16_000] * len(e)
    return np.concatenate(outs), ctc, arrival


def pool_and_rtf(run, path, predictor, mics: list[np.ndarray], ends: list[float]) -> list[list]:
    """Every microphone through one StreamPool, 20 ms packets with staggered starts, each
    decoded live (a GreedyCTC per stream, pushed every packet): the transcripts equal solo
    streaming, and the text on screen when each speaker's last word ends (``ends``, s) is
    measured. Real-time factor solo and pooled."""
    from edgeseq.runtime import StreamPool
    from edgeseq.runtime.ctc import GreedyCTC

    mics, ends = mics[: run.pick(8, 3)], ends[: run.pick(8, 3)]
    solo = [stream(predictor, x) for x in mics]
    t0 = time.perf_counter()
    for x in mics:
        stream(predictor, x)
    solo_s = time.perf_counter() - t0
    audio_s = sum(len(x) for x in mics) / 16_000
    offsets = [k * 7 for k in range(len(mics))]  # packets: microphones start 140 ms apart
    got: list[list[np.ndarray]] = [[] for _ in mics]
    live = [GreedyCTC.from_contract(predictor.contract) for _ in mics]
    growth: list[list[tuple[float, str]]] = [[] for _ in mics]  # (s of its audio, text)
    with StreamPool(path, max_streams=len(mics), threads=1) as pool:
        ids = [pool.open() for _ in mics]
        ticks = max(o + -(-len(x) // CHUNK) for o, x in zip(offsets, mics))
        t0 = time.perf_counter()
        for tick in range(ticks):
            packets = {}
            for sid, x, off in zip(ids, mics, offsets):
                start = (tick - off) * CHUNK
                if 0 <= start < len(x):
                    packets[sid] = x[start : start + CHUNK]
            for sid, out in pool.step(packets).items():
                k = ids.index(sid)
                got[k].append(out)
                if live[k].push(out):  # new characters: on screen now
                    heard = min(len(mics[k]), (tick - offsets[k] + 1) * CHUNK) / 16_000
                    growth[k].append((heard, live[k].text))
        pool_s = time.perf_counter() - t0
    diff = max(float(np.max(np.abs(np.concatenate(g) - s[0]))) for g, s in zip(got, solo))
    same = sum(c.text == s[1].text for c, s in zip(live, solo))
    print(f"parity [pool vs solo]: {len(mics)} microphones, max |diff| {diff:.1e}", flush=True)
    run.results.setdefault("parity", {})["pool vs solo"] = {"max_abs": diff, "streams": len(mics)}
    assert diff <= 1e-5 and same == len(mics), (diff, same)
    _show_growth(growth, offsets)
    # words complete on screen (a space after them) before the speaker finished talking
    early = [_words_before(g, end) for g, end in zip(growth, ends)]
    final = [len(c.text.split()) for c in live]
    run.record(
        "pool_live",
        {
            "microphones": len(mics),
            "words_on_screen_before_speaker_finished": sum(early),
            "words_in_final_transcripts": sum(final),
            "growth": [[(round(t, 2), text) for t, text in g] for g in growth],
        },
    )
    run.record("rtf", {"solo": solo_s / audio_s, "pool": pool_s / audio_s, "under_load": True})
    return [
        ["microphones in one StreamPool, 20 ms packets", len(mics)],
        ["pool transcripts == solo transcripts", f"{same} / {len(mics)}"],
        ["words on screen before the speaker's last word ended", f"{sum(early)} / {sum(final)}"],
        ["real-time factor per stream, solo (1 thread)", f"{solo_s / audio_s:.4f}"],
        ["real-time factor per stream, pooled (1 thread)", f"{pool_s / audio_s:.4f}"],
    ]


def _words_before(growth: list[tuple[float, str]], end: float) -> int:
    """Words followed by a space (so complete) in the text on screen before ``end`` s."""
    shown = [text for t, text in growth if t <= end]
    return len(shown[-1].split(" ")[:-1]) if shown else 0


def _show_growth(growth: list[list[tuple[float, str]]], offsets: list[int]) -> None:
    """Print the pooled transcripts as they grew, on one clock, for the first microphones."""
    events = sorted(
        (off * CHUNK / 16_000 + t, k, text)
        for k, (g, off) in enumerate(zip(growth[:3], offsets))
        for t, text in g
    )
    print("live transcripts of the first microphones (seconds since the first spoke):")
    for at, k, text in events[:40]:
        print(f"  {at:5.2f} s  mic {k + 1}: {text}", flush=True)


def through_server(run, path, predictor, mics: list[np.ndarray]) -> list[list]:
    """Start ``edgeseq serve`` on 127.0.0.1 (a free port), stream each microphone from its
    own StreamClient in 20 ms packets, compare with local streaming, stop the server."""
    import os
    import signal
    import subprocess
    import threading

    from edgeseq.client import StreamClient
    from edgeseq.runtime.ctc import GreedyCTC

    cli = "from edgeseq.cli import main; main()"
    cmd = [sys.executable, "-c", cli, "serve", str(path), "--port", "0", "--threads", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    listening = threading.Event()

    def drain() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if "listening on" in line:
                listening.set()
        listening.set()

    threading.Thread(target=drain, daemon=True).start()
    try:
        found = listening.wait(60) and re.search(r"(ws://\S+)", "".join(lines))
        if not found:
            raise RuntimeError("edgeseq serve did not start:\n" + "".join(lines))
        url = found.group(1)
        diffs, same, rtts = [], 0, []
        for x in mics:
            local, ctc = stream(predictor, x)[:2]
            rows, got = [], GreedyCTC.from_contract(predictor.contract)
            with StreamClient(url) as client:
                for at in range(0, len(x), CHUNK):
                    t0 = time.perf_counter()
                    out = client.step(x[at : at + CHUNK])
                    rtts.append(time.perf_counter() - t0)
                    got.push(out)
                    rows.append(out)
            diffs.append(float(np.max(np.abs(np.concatenate(rows) - local))))
            same += got.text == ctc.text
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
    diff = max(diffs)
    print(f"parity [serve vs local]: {len(mics)} streams, max |diff| {diff:.1e}", flush=True)
    run.results.setdefault("parity", {})["serve vs local"] = {"max_abs": diff}
    assert diff <= 1e-5 and same == len(mics), (diff, same)
    ms = 1000 * np.array(rtts)
    run.record(
        "serve_packet_ms", {"p50": float(np.median(ms)), "p99": float(np.percentile(ms, 99))}
    )
    return [
        ["streams (one StreamClient each), packets of 20 ms", f"{len(mics)}, {len(rtts)} packets"],
        ["transcripts == local streaming", f"{same} / {len(mics)}"],
        ["packet round trip p50 / p99 ms (under load)",
         f"{np.median(ms):.2f} / {np.percentile(ms, 99):.2f}"],
    ]  # fmt: skip
