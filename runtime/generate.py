"""Text generation from token models: prompt encoding, sampling, stop strings.

Vocabularies come from the contract (``preprocessing.vocab``: token strings, index = id).
When it starts with ``<pad>, <unk>, <bos>, <eos>`` (edgeseq's ``Vocabulary``), ``<eos>``
ends generation and the other specials are never sampled. How tokens are picked is one
:class:`Sampling` (temperature, top-k, top-p, seed, stop strings); sampling uses a numpy
``Generator`` seeded by its ``seed``, so a seed always gives the same text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeseq._options import one_place
from edgeseq.errors import InputError

if TYPE_CHECKING:
    from edgeseq.runtime.predictor import StreamingPredictor

__all__ = [
    "SPECIALS",
    "UNKNOWN",
    "Sampling",
    "encode_prompt",
    "generate",
    "sample_loop",
    "sample_token",
]

SPECIALS = ("<pad>", "<unk>", "<bos>", "<eos>")
PAD, UNK, BOS, EOS = 0, 1, 2, 3


def has_specials(vocab: Sequence[str]) -> bool:
    return tuple(vocab[:4]) == SPECIALS


UNKNOWN = ("error", "unk", "skip")  # what encode_prompt does with characters not in the vocab


def encode_prompt(
    prompt: str | Sequence[int], vocab: Sequence[str], unknown: str = "error"
) -> np.ndarray:
    """Token ids ``[T]`` of ``prompt``: longest vocabulary match at each position.

    A character that no vocabulary token matches is refused with ``unknown="error"``
    (the default: the message lists every such character), becomes ``<unk>`` with
    ``"unk"`` (the vocabulary must have it) or is dropped with ``"skip"``. A sequence of
    ints is taken as ids and range-checked.
    """
    if unknown not in UNKNOWN:
        raise InputError(f"unknown must be one of {list(UNKNOWN)}, got {unknown!r}.")
    if not isinstance(prompt, str):
        given = np.asarray(prompt)
        if given.size and given.dtype.kind not in "iu":  # 1.7 would be fed as 1
            raise InputError(
                f"prompt ids must be integers; got dtype {given.dtype}. Pass token ids as "
                "ints (or text, encoded with the model's vocabulary)."
            )
        if given.size and (given.min() < 0 or given.max() >= len(vocab)):
            raise InputError(
                f"prompt ids must be in [0, {len(vocab)}); got {given.min()}..{given.max()}."
            )
        return given.astype(np.int64).reshape(-1)
    skip = 4 if has_specials(vocab) else 0
    table = {tok: i for i, tok in enumerate(vocab) if i >= skip and tok}
    longest = max((len(t) for t in table), default=1)
    ids, i = [], 0
    missing: dict[str, list[int]] = {}  # character -> its positions
    while i < len(prompt):
        for n in range(min(longest, len(prompt) - i), 0, -1):
            tok = table.get(prompt[i : i + n])
            if tok is not None:
                ids.append(tok)
                i += n
                break
        else:
            if unknown == "unk" and skip:
                ids.append(UNK)
            elif unknown != "skip":
                missing.setdefault(prompt[i], []).append(i)
            i += 1
    if missing:
        raise InputError(_unknown_message(missing, vocab, unknown, bool(skip)))
    return np.asarray(ids, dtype=np.int64)


def _unknown_message(
    missing: dict[str, list[int]], vocab: Sequence[str], unknown: str, has_unk: bool
) -> str:
    shown = ", ".join(
        f"{ch!r} (position {at[0]}" + (f", {len(at)} times)" if len(at) > 1 else ")")
        for ch, at in list(missing.items())[:12]
    )
    more = f" and {len(missing) - 12} more" if len(missing) > 12 else ""
    head = (
        f"the prompt has {sum(map(len, missing.values()))} character(s) that are not in the "
        f"model's vocabulary of {len(vocab)} tokens: {shown}{more}"
    )
    drop = "unknown='skip' (CLI: --unknown skip) to drop them"
    if not has_unk:
        why = "; this vocabulary has no <unk>" if unknown == "unk" else ""
        return f"{head}{why}. Expected text over its tokens: rewrite them, or pass {drop}."
    return (
        f"{head}. Expected text over its tokens: rewrite them, or pass unknown='unk' (CLI: "
        f"--unknown unk) to feed each as <unk>, or {drop}."
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Sampling:
    """How each generated token is picked: the options that travel together from
    :meth:`StreamingPredictor.generate`, :meth:`EncoderDecoder.generate` and ``edgeseq
    generate`` to the sampling loop. Checked when made: a bad value raises
    :class:`~edgeseq.errors.InputError` naming the field, what it must be and what it got.

    Parameters
    ----------
    temperature
        Softmax temperature, a finite number >= 0; ``0`` is greedy (argmax).
    top_k
        Sample among the ``top_k`` likeliest tokens (an int >= 1), or ``None``: all.
    top_p
        Nucleus: the smallest set of tokens whose probability reaches ``top_p`` (in
        ``(0, 1]``), or ``None``: all.
    seed
        Seed of the numpy ``Generator`` (an int >= 0): the same seed, model, prompt and
        options give the same text. ``None``: unseeded.
    stop
        Strings that end the text before they would appear (never shown): one string or
        several; kept as a tuple (``None`` or ``()``: no stop string).

    Examples
    --------
    >>> creative = Sampling(temperature=0.8, top_p=0.95, seed=1, stop="\\n\\n")
    >>> text = "".join(predictor.generate("Once ", 80, sampling=creative))
    """

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: Sequence[str] = ()

    def __post_init__(self) -> None:
        t, k, p, seed = self.temperature, self.top_k, self.top_p, self.seed
        if not (isinstance(t, (int, float)) and np.isfinite(t) and t >= 0):
            raise InputError(f"temperature must be a finite number >= 0 (0: greedy), got {t!r}.")
        if k is not None and not (_is_int(k) and k >= 1):
            raise InputError(f"top_k must be a positive int or None, got {k!r}.")
        if p is not None and not (isinstance(p, (int, float)) and 0 < p <= 1):
            raise InputError(f"top_p must be in (0, 1] or None, got {p!r}.")
        if seed is not None and not (_is_int(seed) and seed >= 0):
            raise InputError(f"seed must be an int >= 0 or None (unseeded), got {seed!r}.")
        stops = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        if not all(isinstance(x, str) and x for x in stops):
            raise InputError(
                f"stop must be a non-empty string or a list of them, got {self.stop!r}."
            )
        object.__setattr__(self, "stop", stops)

    @classmethod
    def given(
        cls,
        sampling: Sampling | None,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
    ) -> Sampling:
        """``sampling``, or the one the keyword arguments of a ``generate`` method make
        (how they were passed before :class:`Sampling`). Both at once is refused unless
        the keywords are left at their defaults."""
        stops = () if stop is None else stop
        keywords = {"temperature": temperature, "top_k": top_k, "top_p": top_p, "seed": seed}
        keywords["stop"] = stops
        return one_place(cls, sampling, keywords, InputError, "sampling")


def _check_max_tokens(max_tokens: int) -> None:
    if not (_is_int(max_tokens) and max_tokens >= 0):
        raise InputError(f"max_tokens must be an int >= 0, got {max_tokens!r}.")


def sample_token(
    logits: np.ndarray,
    rng: np.random.Generator,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    banned: Sequence[int] = (),
) -> int:
    """One id from ``logits`` ``[vocab]``: temperature, then top-k, then nucleus (top-p).

    ``temperature=0`` is greedy (argmax). Ids in ``banned`` are never chosen.
    """
    z = np.array(logits, dtype=np.float64).reshape(-1)
    if len(banned):
        z[list(banned)] = -np.inf
    if temperature == 0:
        return int(np.argmax(z))
    z = z / temperature
    if top_k is not None and top_k < z.size:
        kth = np.partition(z, -top_k)[-top_k]
        z[z < kth] = -np.inf
    p = np.exp(z - z.max())
    p /= p.sum()
    if top_p is not None and top_p < 1:
        order = np.argsort(-p, kind="stable")
        before = np.cumsum(p[order]) - p[order]  # mass of the more likely tokens
        p[order[before >= top_p]] = 0.0  # keep the smallest set reaching top_p
        p /= p.sum()
    cdf = np.cumsum(p)
    return int(min(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"), p.size - 1))


class _StopFilter:
    """Holds back text that may be the start of a stop string; cuts at the first stop."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops, self.buf = list(stops), ""

    def feed(self, piece: str) -> tuple[str, bool]:
        self.buf += piece
        if not self.stops:
            out, self.buf = self.buf, ""
            return out, False
        hits = [i for i in (self.buf.find(s) for s in self.stops) if i >= 0]
        if hits:
            return self.buf[: min(hits)], True
        hold = 0
        for k in range(1, min(len(self.buf), max(map(len, self.stops)) - 1) + 1):
            if any(s.startswith(self.buf[-k:]) for s in self.stops):
                hold = k
        out, self.buf = self.buf[: len(self.buf) - hold], self.buf[len(self.buf) - hold :]
        return out, False


def _last_logits(y: Any) -> np.ndarray:
    y = next(iter(y.values())) if isinstance(y, dict) else y
    return y[-1] if y.ndim > 1 else y


def sample_loop(
    step: Callable[[np.ndarray], Any],
    logits: np.ndarray,
    vocab: Sequence[str],
    max_tokens: int,
    sampling: Sampling,
) -> Iterator[str]:
    """Sample from ``logits``, feed each id to ``step`` for the next logits, yield text."""
    _check_max_tokens(max_tokens)
    stopper = _StopFilter(sampling.stop)
    specials = has_specials(vocab)
    banned = (PAD, UNK, BOS) if specials else ()
    if np.shape(logits)[-1] != len(vocab):
        raise InputError(
            f"the model outputs {np.shape(logits)[-1]} scores per step but its vocabulary "
            f"has {len(vocab)} tokens; expected one score per token. Re-export with the "
            "vocabulary the model was trained on."
        )
    rng = np.random.default_rng(sampling.seed)
    temperature, top_k, top_p = sampling.temperature, sampling.top_k, sampling.top_p

    def run() -> Iterator[str]:
        nonlocal logits
        for _ in range(max_tokens):
            tok = sample_token(logits, rng, temperature, top_k, top_p, banned)
            if specials and tok == EOS:
                break
            text, hit = stopper.feed(vocab[tok])
            if text:
                yield text
            if hit:
                return
            logits = _last_logits(step(np.int64(tok)))
        if stopper.buf:
            yield stopper.buf

    return run()


def generate(
    predictor: StreamingPredictor,
    prompt: str | Sequence[int],
    max_tokens: int,
    sampling: Sampling,
    *,
    reset: bool = True,
    unknown: str = "error",
) -> Iterator[str]:
    """Text pieces from a token model; see :meth:`StreamingPredictor.generate`.

    The prompt is fed in one call (``<bos>`` alone when it is empty); ``reset=False``
    continues from the predictor's current state instead of starting afresh. ``unknown``
    says what happens to prompt characters not in the vocabulary (:func:`encode_prompt`).
    """
    vocab = predictor.contract.preprocessing.vocab
    if not vocab or not predictor.engine.frames.is_int:
        raise InputError(
            "generate() needs a token model with a vocabulary in its contract; this model "
            f"takes {predictor.engine.frames.describe()} and has "
            f"{'a' if vocab else 'no'} vocabulary. Export a text model with "
            "preprocessing=Preprocessing(vocab=Vocabulary.to_list())."
        )
    _check_max_tokens(max_tokens)
    ids = encode_prompt(prompt, vocab, unknown)
    if ids.size == 0:
        if not has_specials(vocab):
            raise InputError("the prompt is empty and the vocabulary has no <bos>; pass text.")
        ids = np.array([BOS], np.int64)
    if reset:
        predictor.reset()
    logits = _last_logits(predictor.step(ids))
    return sample_loop(predictor.step, logits, vocab, max_tokens, sampling)
