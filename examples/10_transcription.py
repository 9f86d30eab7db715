"""Streaming transcription: raw 16 kHz audio in, text out while the speaker is talking.

Data: spoken commands synthesised with espeak-ng (Debian package ``espeak-ng``, GPL-3.0+;
see examples/_speech_data.py): a grammar of things said to a device, spoken by voices
made of an accent and a variant, at random speeds, pitches and pitch ranges, with white,
pink or brown noise added. Test voices are never heard in training: their variants
occur only in the test set, and two of the eight accents too. The same held-out
sentences are scored clean and at 20, 10, 5 and 0 dB SNR.

Model: a log-mel front-end (25 ms frames every 10 ms, 40 bands, three frames per 30 ms
step; :class:`edgeseq.train.audio.LogMel`) inside the graph, then a unidirectional
two-layer LSTM trained with CTC (:func:`edgeseq.train.ctc.fit_ctc`) on characters. The
exported model takes raw samples: its contract records the 480-sample window, so a
device feeds any number of samples per call (here 20 ms, 320 samples, as a microphone
delivers them) and :class:`edgeseq.runtime.ctc.GreedyCTC` turns each 30 ms step's
emissions into text as they arrive. Several microphones stream at once through one
:class:`edgeseq.runtime.StreamPool`.

Reported: CER and WER on held-out voices at each SNR; latency from the end of each
correctly recognised word (espeak-ng's word timings) to the moment its last character
appears; real-time factor per stream on one core (timing figures depend on the
machine's load: rerun this script on a quiet machine to measure them).

Synthetic speech shows the streaming machinery and how recognition degrades with noise
and unseen voices; it is rule-based, clean of disfluencies and room acoustics, and says
nothing about accuracy on human speech.

Run: ``python examples/10_transcription.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import keep, reuse, reuse_option, start
from _speech_data import ALPHABET, sentence, speak, split_voices
from _speech_live import pool_and_rtf, stream, through_server

SNRS = (None, 20, 10, 5, 0)  # None: clean
TRAIN_SNRS = (None, 30, 20, 10, 5)
VOCAB = ["<blank>", *ALPHABET]


def edits(a: list, b: list) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def matched_words(hyp: list[str], ref: list[str]) -> list[tuple[int, int]]:
    """(hypothesis index, reference index) of words an edit-distance alignment matches."""
    n, m = len(hyp), len(ref)
    d = np.zeros((n + 1, m + 1), int)
    d[:, 0], d[0, :] = np.arange(n + 1), np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i, j] = min(
                d[i - 1, j] + 1, d[i, j - 1] + 1, d[i - 1, j - 1] + (hyp[i - 1] != ref[j - 1])
            )
    pairs, i, j = [], n, m
    while i and j:
        if hyp[i - 1] == ref[j - 1] and d[i, j] == d[i - 1, j - 1]:
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif d[i, j] == d[i - 1, j - 1] + 1:
            i, j = i - 1, j - 1
        elif d[i, j] == d[i - 1, j] + 1:
            i -= 1
        else:
            j -= 1
    return pairs[::-1]


def make_set(n: int, voices: list[str], rng: np.random.Generator):
    """``n`` utterances by random voices: (Utterance, noise kind) each."""
    from edgeseq.train.speech import NOISES

    return [
        (speak(sentence(rng), voices[int(rng.integers(len(voices)))], rng), NOISES[k % 3])
        for k in range(n)
    ]


def noisy(samples: np.ndarray, snr, kind: str, seed: int) -> np.ndarray:
    from edgeseq.train.speech import add_noise

    return samples if snr is None else add_noise(samples, snr, np.random.default_rng(seed), kind)


def main(argv: list[str] | None = None) -> dict:
    run = start("10_transcription", __doc__, argv, add_args=reuse_option)
    import torch

    from edgeseq.contract import Preprocessing
    from edgeseq.exporters.seq import export_model
    from edgeseq.runtime import StreamingPredictor
    from edgeseq.train.audio import FrontEnd, Transcriber, cut_frames
    from edgeseq.train.ctc import fit_ctc
    from edgeseq.train.models import SeqConfig
    from edgeseq.train.speech import espeak_voices
    from edgeseq.train.training import TrainConfig

    rng = np.random.default_rng(run.seed)
    train_voices, test_voices = split_voices(espeak_voices("en"), espeak_voices("variant"))
    n_train, n_test = run.pick(1500, 24), run.pick(100, 3)
    t0 = time.perf_counter()
    train_set = make_set(n_train, train_voices, rng)
    test_set = make_set(n_test, test_voices, np.random.default_rng(run.seed + 1))
    spec = FrontEnd()
    frames = [
        cut_frames(noisy(u.samples, TRAIN_SNRS[k % 5], kind, k), spec)
        for k, (u, kind) in enumerate(train_set)
    ]
    audio_min = sum(len(f) for f in frames) * spec.window / 16_000 / 60
    run.table(
        "Data (espeak-ng; no test voice is heard in training)",
        ["measure", "value"],
        [
            ["training utterances / minutes of audio", f"{n_train} / {audio_min:.1f}"],
            ["training voices (accent+variant)", len(train_voices)],
            ["held-out voices / utterances per SNR", f"{len(test_voices)} / {n_test}"],
            ["training noise (SNR dB, cycled)", "clean, 30, 20, 10, 5; white/pink/brown"],
            ["synthesis + framing seconds", round(time.perf_counter() - t0, 1)],
        ],
    )

    # ---- model: log-mel front-end in the graph + LSTM, trained on precomputed features
    torch.manual_seed(run.seed)
    cfg = SeqConfig(
        cell="lstm", input_size=spec.features, hidden_size=run.pick(128, 16),
        layers=run.pick(2, 1), output_size=len(VOCAB), task="transcribe",
    )  # fmt: skip
    model = Transcriber(cfg, spec)
    with torch.inference_mode():
        raw = [model.front.raw(torch.from_numpy(f)[None])[0] for f in frames]
        model.front.set_stats(torch.cat(raw))
        feats = [(r - model.front.mean) / model.front.std for r in raw]
    targets = [np.array([VOCAB.index(c) for c in u.text]) for u, _ in train_set]

    def augment(x: torch.Tensor) -> torch.Tensor:  # mask a band of features and of steps
        x = x.clone()
        for row in x:
            f0, t0 = (
                int(torch.randint(0, x.shape[2] - 12, ())),
                int(torch.randint(0, x.shape[1], ())),
            )
            row[:, f0 : f0 + int(torch.randint(0, 12, ()))] = 0.0
            row[t0 : t0 + int(torch.randint(0, 8, ()))] = 0.0
        return x

    train = TrainConfig(
        epochs=run.pick(30, 1), batch_size=8, lr=2e-3, val_fraction=0.05, patience=5,
        seed=run.seed, max_steps=None if not run.quick else 4, progress=not run.quick,
    )  # fmt: skip
    saved, key = run.path("transcriber.pt"), f"{cfg.to_json()} {train} {n_train}"
    result = reuse(run, saved, model, key)
    if result is None:
        result = fit_ctc(model.rnn, feats, targets, train, augment=augment)
        keep(saved, model, key, result)
    model.eval()

    path = run.path("transcriber.onnx")
    export_model(model, path, preprocessing=Preprocessing(vocab=VOCAB))
    predictor = StreamingPredictor(path, threads=1)
    probe = test_set[0][0].samples
    with torch.inference_mode():
        ref = model(torch.from_numpy(cut_frames(probe, spec))[None])[0].numpy()
    run.parity("raw samples -> log-probs", predictor, probe, reference=ref, max_chunk=700)

    # ---- held-out voices at each SNR, streamed in 20 ms packets
    rows, lat_ms, lat_steps, example = [], [], [], None
    for snr in SNRS:
        c_err = c_n = w_err = w_n = 0
        for k, (u, kind) in enumerate(test_set):
            x = noisy(u.samples, snr, kind, 10_000 + k)
            emissions, ctc, arrival = stream(predictor, x)
            spans = list(re.finditer(r"\S+", ctc.text))  # the words, where they are in the text
            hyp, ref_words = [m.group() for m in spans], u.text.split()
            c_err += edits(list(" ".join(hyp)), list(u.text))
            c_n += len(u.text)
            w_err += edits(hyp, ref_words)
            w_n += len(ref_words)
            for h, r in matched_words(hyp, ref_words):
                step = ctc.steps[spans[h].end() - 1]  # when the word's last character came
                word_end = u.words[r][2]
                if word_end is None:  # spoken together with the next word: no end reported
                    continue
                lat_ms.append(1000 * (arrival[step] - word_end))
                lat_steps.append(step - int(word_end * 16_000) // spec.window)
            if snr == 10 and example is None:
                example = (u, x, emissions, ctc, arrival)
        rows.append(["clean" if snr is None else f"{snr} dB", c_err / c_n, w_err / w_n])
    run.table(
        f"Held-out voices, {n_test} utterances per SNR, streamed in 20 ms packets (ONNX)",
        ["SNR", "CER", "WER"],
        rows,
    )
    run.record("cer_by_snr", {r[0]: round(r[1], 4) for r in rows})
    run.record("wer_by_snr", {r[0]: round(r[2], 4) for r in rows})
    lat, steps = np.array(lat_ms), np.array(lat_steps)

    def pcts(a: np.ndarray) -> str:
        return f"{np.median(a):.0f} / {np.percentile(a, 90):.0f}" if len(a) else "-"

    run.table(
        "Latency: end of a correctly recognised word -> its last character on screen",
        ["measure", "value"],
        [
            ["words measured (all SNRs)", len(lat)],
            ["median / 90th percentile, ms", pcts(lat)],
            ["median / 90th percentile, 30 ms model steps", pcts(steps)],
        ],
    )
    if len(lat):
        run.record(
            "latency",
            {
                "ms_median": float(np.median(lat)),
                "ms_p90": float(np.percentile(lat, 90)),
                "steps_median": float(np.median(steps)),
                "steps_p90": float(np.percentile(steps, 90)),
            },
        )

    # ---- several microphones through one pool; real-time factor on one core
    noisy10 = [noisy(u.samples, 10, kd, k) for k, (u, kd) in enumerate(test_set)]
    ends = [u.words[-1][2] for u, _ in test_set]  # when each speaker's last word ends
    pool_rows = pool_and_rtf(run, path, predictor, noisy10, ends)
    run.table(
        "Many microphones and real-time factor (timing measured under the machine's load)",
        ["measure", "value"],
        pool_rows,
    )  # fmt: skip
    serve_rows = through_server(run, path, predictor, noisy10[: run.pick(4, 2)])
    run.table(
        "edgeseq serve: StreamClients sending 20 ms packets over WebSocket (127.0.0.1)",
        ["measure", "value"],
        serve_rows,
    )

    run.table(
        "Training",
        ["measure", "value"],
        [
            ["LSTM layers x hidden, parameters", f"{cfg.layers} x {cfg.hidden_size}, "
             f"{sum(p.numel() for p in model.parameters() if p.requires_grad):,}"],
            ["epochs (best), best val CTC loss per character",
             f"{len(result.history)} ({(result.best_epoch or 0) + 1}), {result.best_val_loss:.3f}"],
            ["train seconds", round(result.seconds, 1)],
        ],
    )  # fmt: skip
    if example is not None:
        _plot(run, spec, *example)
    return run.finish()


def _plot(run, spec, u, x, emissions, ctc, arrival) -> None:
    """Waveform with word ends, emissions over time, and the transcript as it grew."""
    plt = run.pyplot()
    fig, axes = plt.subplots(3, 1, figsize=(10, 7), sharex=True)
    t = np.arange(len(x)) / 16_000
    axes[0].plot(t, x, lw=0.4)
    for w, _, end in u.words:
        if end is None:
            continue
        axes[0].axvline(end, color="tab:red", lw=0.6, alpha=0.6)
        axes[0].text(end, 0.9 * np.abs(x).max(), w, fontsize=7, ha="right", color="tab:red")
    axes[0].set_title(f"held-out voice {u.voice}, 10 dB SNR: {u.text!r} (red: word ends)")
    steps = np.arange(len(emissions)) * spec.window / 16_000
    axes[1].imshow(
        emissions.T, aspect="auto", origin="lower", cmap="magma", vmin=-12, vmax=0,
        extent=(0, steps[-1] + spec.window / 16_000, -0.5, len(VOCAB) - 0.5),
    )  # fmt: skip
    axes[1].set_yticks(
        range(len(VOCAB)), ["_"] + [c if c != " " else "␣" for c in ALPHABET], fontsize=5
    )
    axes[1].grid(False)
    axes[1].set_title(
        "emissions: log-probability of each character per 30 ms step (blank at the bottom)"
    )
    shown = 0
    for i, step in enumerate(ctc.steps):
        if ctc.text[i] == " " or i == len(ctc.text) - 1:
            axes[2].plot(arrival[step], shown, "o", ms=3, color="tab:blue")
            axes[2].text(
                arrival[step] + 0.02, shown, ctc.text[: i + 1].strip(), fontsize=7, va="center"
            )
            shown += 1
    axes[2].set_ylim(-1, shown + 1)
    axes[2].set_yticks([])
    axes[2].set_xlabel("seconds of audio received")
    axes[2].set_title("the transcript as it grew (each word when its last character arrived)")
    run.save_plot(fig, "10_transcription.png")


if __name__ == "__main__":
    main()
