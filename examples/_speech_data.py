"""Spoken commands for examples/10_transcription.py: sentences, voices, synthesis, noise.

Sentences come from a small grammar of things said to a device (lights, timers, calls,
music, weather, digit strings): 134 words, most sentences unique. Each is spoken by an
espeak-ng voice, an accent plus a variant, at a random speed, pitch and pitch range.
Voices are split so that no test voice is heard in training: test variants never occur
in training, and two of the eight accents occur only in the test set.
"""

from __future__ import annotations

import numpy as np

ROOMS = [
    "kitchen",
    "bedroom",
    "garage",
    "hallway",
    "office",
    "bathroom",
    "garden",
    "attic",
    "cellar",
    "living room",
    "dining room",
]
DEVICES = [
    "light",
    "lights",
    "fan",
    "heater",
    "radio",
    "lamp",
    "oven",
    "kettle",
    "television",
    "speaker",
]
NAMES = [
    "alice",
    "bob",
    "carol",
    "david",
    "emma",
    "frank",
    "grace",
    "henry",
    "julia",
    "oscar",
    "peter",
    "sophie",
]
GENRES = ["jazz", "rock", "classical", "pop", "blues", "folk"]
CITIES = ["london", "paris", "berlin", "tokyo", "boston", "madrid", "dublin", "oslo", "vienna"]
DAYS = ["today", "tomorrow", "tonight"] + [f"on {d}" for d in ["monday", "friday", "sunday"]]
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEENS = [
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
TENS = ["twenty", "thirty", "forty", "fifty"]
UNITS = ["seconds", "minutes", "hours"]
ALPHABET = " 'abcdefghijklmnopqrstuvwxyz"  # the transcript's characters (after the blank)

# accents heard only in the test set; the rest are split by variant
TEST_ACCENTS = ("en-gb-x-gbcwmd", "en-us-nyc")
SKIP_VARIANTS = ("whisper", "whisperf")  # unvoiced speech: a different task


def number(rng: np.random.Generator) -> str:
    n = int(rng.integers(1, 60))
    if n < 10:
        return DIGITS[n]
    if n < 20:
        return TEENS[n - 10]
    tens, ones = divmod(n, 10)
    return TENS[tens - 2] + ("" if ones == 0 else f" {DIGITS[ones]}")


def sentence(rng: np.random.Generator) -> str:
    """One random command from the grammar."""

    def pick(options: list[str]) -> str:
        return options[int(rng.integers(len(options)))]

    kind = int(rng.integers(8))
    if kind == 0:
        return f"turn {pick(['on', 'off'])} the {pick(ROOMS)} {pick(DEVICES)}"
    if kind == 1:
        return f"set a timer for {number(rng)} {pick(UNITS)}"
    if kind == 2:
        return f"{pick(['call', 'text', 'message'])} {pick(NAMES)} {pick(DAYS)}"
    if kind == 3:
        return f"play some {pick(GENRES)} in the {pick(ROOMS)}"
    if kind == 4:
        return f"what is the weather in {pick(CITIES)} {pick(DAYS)}"
    if kind == 5:
        return " ".join(pick(DIGITS) for _ in range(int(rng.integers(3, 7))))
    if kind == 6:
        return f"set the {pick(['heating', 'volume', 'alarm'])} to {number(rng)}"
    return f"remind me to call {pick(NAMES)} in {number(rng)} {pick(UNITS)}"


def split_voices(accents: list[str], variants: list[str]) -> tuple[list[str], list[str]]:
    """(training voices, test voices) as ``accent+variant`` names; every sixth variant
    (sorted) and the :data:`TEST_ACCENTS` are for testing only."""
    variants = sorted(v for v in variants if v not in SKIP_VARIANTS)
    test_variants = set(variants[3::6])
    train = [
        f"{a}+{v}"
        for a in accents
        if a not in TEST_ACCENTS
        for v in variants
        if v not in test_variants
    ]
    test = [f"{a}+{v}" for a in accents for v in sorted(test_variants)]
    return train, test


def speak(text: str, voice: str, rng: np.random.Generator):
    """``text`` spoken by ``voice`` at a random speed (130-200 words/min), pitch and range,
    with 0.1-0.4 s of silence before and 0.4 s after (a device's microphone runs on)."""
    from edgeseq.train.speech import RATE, Utterance, synthesize

    u = synthesize(
        text,
        voice,
        rate=int(rng.integers(130, 201)),
        pitch=int(rng.integers(25, 76)),
        range_=int(rng.integers(30, 81)),
    )
    lead = int(rng.uniform(0.1, 0.4) * RATE)
    samples = np.concatenate(
        [np.zeros(lead, np.float32), u.samples, np.zeros(int(0.4 * RATE), np.float32)]
    )
    shift = lead / RATE
    words = [
        (w, None if a is None else a + shift, None if b is None else b + shift)
        for w, a, b in u.words
    ]
    return Utterance(text, voice, samples, words)
