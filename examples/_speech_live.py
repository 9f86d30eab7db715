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


def pool_and_rtf(run, path, predictor, mics: list[np.ndarray]) -> list[list]:
    """Every microphone through one StreamPool, 20 ms packets with staggered starts; the
    transcripts equal solo streaming. Real-time factor solo and pooled."""
    from edgeseq.runtime import StreamPool
    from edgeseq.runtime.ctc import GreedyCTC

    mics = mics[: run.pick(8, 3)]
    solo = [stream(predictor, x) for x in mics]
    t0 = time.perf_counter()
    for x in mics:
        stream(predictor, x)
    solo_s = time.perf_counter() - t0
    audio_s = sum(len(x) for x in mics) / 16_000
    offsets = [k * 7 for k in range(len(mics))]  # packets: microphones start 140 ms apart
    got: list[list[np.ndarray]] = [[] for _ in mics]
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
                got[ids.index(sid)].append(out)
        pool_s = time.perf_counter() - t0
    diff = max(float(np.max(np.abs(np.concatenate(g) - s[0]))) for g, s in zip(got, solo))
    texts = []
    for g in got:
        ctc = GreedyCTC.from_contract(predictor.contract)
        ctc.push(np.concatenate(g))
        texts.append(ctc.text)
    same = sum(t == s[1].text for t, s in zip(texts, solo))
    print(f"parity [pool vs solo]: {len(mics)} microphones, max |diff| {diff:.1e}", flush=True)
    run.results.setdefault("parity", {})["pool vs solo"] = {"max_abs": diff, "streams": len(mics)}
    assert diff <= 1e-5 and same == len(mics), (diff, same)
    run.record("rtf", {"solo": solo_s / audio_s, "pool": pool_s / audio_s, "under_load": True})
    return [
        ["microphones in one StreamPool, 20 ms packets", len(mics)],
        ["pool transcripts == solo transcripts", f"{same} / {len(mics)}"],
        ["real-time factor per stream, solo (1 thread)", f"{solo_s / audio_s:.4f}"],
        ["real-time factor per stream, pooled (1 thread)", f"{pool_s / audio_s:.4f}"],
    ]


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
