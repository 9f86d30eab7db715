"""Decoders whose first state comes from another model: captioning and translation.

The decoder's contract names its init model (``model.extra.init_model``, a file beside
it). For ``seq2seq`` that is a streaming encoder whose final state starts the decoder
(and, for an attention decoder, whose outputs become the decoder's per-stream memory);
for ``one_to_many`` it is a small graph mapping a condition vector (e.g. an image's
features) to the state.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeseq.contract import Contract
from edgeseq.errors import ContractError, InputError
from edgeseq.exact import first_inexact
from edgeseq.runtime._beam import beam_tokens, check_beam_options
from edgeseq.runtime._options import LoadOptions
from edgeseq.runtime._session import ModelSource, graph_io, open_session
from edgeseq.runtime.generate import BOS, Sampling, encode_prompt, has_specials, sample_loop
from edgeseq.runtime.predictor import StreamingPredictor

__all__ = ["EncoderDecoder"]


class EncoderDecoder:
    """Run an init model, hand its state to a token decoder, then decode greedily.

    Parameters
    ----------
    decoder
        Path (or bytes) of the decoder model exported by ``export_model``.
    init_model
        The encoder/bridge model; by default the file named in the decoder's contract,
        next to the decoder.
    device, threads
        Where and with how many onnxruntime intra-op threads both models run.
    options
        ``device`` and ``threads`` as one :class:`~edgeseq.runtime.LoadOptions` (not
        both for one field). Its ``contract``, ``state`` and ``constants`` are the
        decoder's: the init model loads from its own file and contract, with the same
        device and threads. ``context`` and ``window`` are refused: the decoder takes one
        token a call and the encoder its whole source in one call, so neither is cut.
    """

    def __init__(
        self,
        decoder: ModelSource,
        init_model: ModelSource | None = None,
        device: str = "cpu",
        threads: int | None = None,
        *,
        options: LoadOptions | None = None,
    ) -> None:
        loading = LoadOptions.given(options, device=device, threads=threads)
        cut = [f"{n}={v}" for n in ("context", "window") if (v := getattr(loading, n)) is not None]
        if cut:
            raise InputError(
                f"EncoderDecoder got {', '.join(cut)} in its options; expected neither: the "
                "decoder takes one token a call and the encoder its whole source in one "
                "call. Drop them (dataclasses.replace(options, context=None, window=None))."
            )
        self.options = loading
        self.decoder = StreamingPredictor(decoder, options=loading)
        shared = LoadOptions(device=loading.device, threads=loading.threads)
        extra = self.decoder.contract.model.extra
        if init_model is None:
            name = extra.get("init_model")
            if not name or isinstance(decoder, (bytes, bytearray, memoryview)):
                raise ContractError(
                    "the decoder's contract names no init model file (model.extra.init_model) "
                    "or the decoder was given as bytes; pass init_model= explicitly."
                )
            init_model = Path(decoder).with_name(name)  # type: ignore[arg-type]
        self.role = "encoder" if self.decoder.contract.model.topology == "seq2seq" else "init"
        if self.role == "encoder":
            self.encoder: StreamingPredictor | None = StreamingPredictor(init_model, options=shared)
        else:
            self.encoder = None
            self._bridge = open_session(init_model, shared.device, shared.threads)
            meta = self._bridge.get_modelmeta().custom_metadata_map
            self._bridge_contract = Contract.from_metadata(meta, source=str(init_model))
            self._bridge_contract.check_graph(*graph_io(self._bridge))
        vocab = self.decoder.contract.preprocessing.vocab
        self.vocab: list[str] | None = vocab
        # an attention decoder: {"kind", "memory", "mask", "max_source"} (its memory inputs)
        self.attention: dict[str, Any] | None = extra.get("attention")

    def _source(self, source: Any, unknown: str) -> Any:
        """Text ``source`` as the encoder's token ids (``unknown``: see encode_prompt)."""
        if self.encoder is None or not isinstance(source, str):
            return source
        vocab = self.encoder.contract.preprocessing.vocab
        if not vocab:
            raise InputError(
                "the encoder has no vocabulary, so text cannot be encoded; expected "
                "its frames [T, F] or token ids [T]."
            )
        return encode_prompt(source, vocab, unknown)

    def start(self, source: Any, *, unknown: str = "error") -> None:
        """Prime the decoder: ``source`` is the encoder's frames ``[T, F]`` / token ids ``[T]``
        (or text, encoded with the encoder's vocabulary; characters not in it are refused
        unless ``unknown`` is ``"unk"`` or ``"skip"``), or the condition vector ``[C]`` of
        a one-to-many model.

        The decoder starts a new sequence (:attr:`~StreamingPredictor.frames_seen` from 0)
        from the encoder's state; a refused source changes none of the decoder's state."""
        if self.encoder is not None:
            source = self._source(source, unknown)
            self.encoder.reset()
            outputs = self.encoder.step(source)
            self._begin({**self.encoder.state, **self._memory(outputs)})
            return
        spec = self._bridge_contract.inputs[0]
        raw = source if isinstance(source, np.ndarray) else np.asarray(source)
        bad = first_inexact(raw, np.float32)  # an integer vector must reach it exactly
        if bad is not None:
            where = f"index {bad.index}"
            raise InputError(f"condition: {bad.message(where)}; the decoder's state is unchanged.")
        cond = np.asarray(source, dtype=np.float32)
        size = spec.shape[-1]
        if cond.shape != (size,) or not np.isfinite(cond).all():
            raise InputError(
                f"condition must be a finite float vector of shape ({size},); got "
                f"{cond.dtype} {cond.shape}."
            )
        names = [o.name for o in self._bridge_contract.outputs]
        outs = self._bridge.run(names, {spec.name: cond[None]})
        self._begin(dict(zip(names, outs, strict=True)))

    def _begin(self, states: dict[str, np.ndarray]) -> None:
        """A new decoder sequence from ``states``: every state set, ``frames_seen`` (and any
        left context) back to the start, or, if ``states`` are refused, nothing changed."""
        before = self.decoder.snapshot()
        self.decoder.reset()
        try:
            self.decoder.set_state(states)
        except BaseException:
            self.decoder.restore(before)
            raise

    def _memory(self, outputs: Any) -> dict[str, np.ndarray]:
        """An attention decoder's per-stream memory from the encoder's outputs ``[S, M]``:
        padded to the decoder's ``max_source`` rows, with a mask of the valid ones."""
        spec = self.attention
        if spec is None:
            return {}
        if isinstance(outputs, dict):
            outputs = outputs[self.encoder.contract.data_outputs()[0].name]  # type: ignore[union-attr]
        pairs = {p.input: p for p in self.decoder.contract.states}
        rows, size = pairs[spec["memory"]].shape[1:]
        out = np.asarray(outputs, np.float32)
        out = out.reshape(-1, out.shape[-1]) if out.ndim else out
        if out.ndim != 2 or out.shape[1] != size or not 1 <= len(out) <= rows:
            raise InputError(
                f"the encoder gave outputs of shape {out.shape}; this attention decoder's "
                f"memory holds 1 to {rows} rows of {size}. Pass a source of at most {rows} "
                "frames or tokens, or re-export with a larger max_source."
            )
        memory = np.zeros((1, rows, size), np.float32)
        mask = np.zeros((1, rows), np.float32)
        memory[0, : len(out)], mask[0, : len(out)] = out, 1.0
        return {spec["memory"]: memory, spec["mask"]: mask}

    def greedy(
        self, source: Any, bos: int, eos: int, max_len: int = 64, *, unknown: str = "error"
    ) -> Iterator[int]:
        """Yield the decoded token ids one by one (argmax at each step), stopping at ``eos``."""
        source = self._source(source, unknown)  # refused text changes no state
        self.start(source)  # a new decoder sequence, or no change if refused
        token = bos
        for _ in range(max_len):
            logits = self.decoder.step(np.int64(token))
            token = int(np.argmax(logits))
            if token == eos:
                return
            yield token

    def beam(
        self,
        source: Any,
        bos: int,
        eos: int,
        max_len: int = 64,
        width: int = 5,
        *,
        length_penalty: float = 0.0,
        unknown: str = "error",
    ) -> Iterator[int]:
        """Yield the token ids of the most probable output a beam search of ``width``
        hypotheses finds (``width=1`` is :meth:`greedy`), without BOS/EOS. Tokens every
        kept hypothesis shares are yielded as soon as they agree, the rest when the search
        ends (every kept output ended, or ``max_len`` tokens). Afterwards the decoder holds
        the best output's state.

        Hypotheses are ranked by total log-probability divided by GNMT's length penalty
        ``((5 + length) / 6) ** length_penalty`` (length: the output's tokens and its EOS).
        The default 0 ranks by the total itself, which favours short outputs (every token
        costs log-probability); 0.6 to 1.0 lets longer outputs win. A bad width,
        ``max_len`` or ``length_penalty`` raises :class:`InputError` before any state
        changes."""
        check_beam_options(width, max_len, length_penalty)
        self.start(self._source(source, unknown))  # sets every decoder state, or none
        return beam_tokens(self.decoder, bos, eos, max_len, width, length_penalty)

    def generate(
        self,
        source: Any,
        max_tokens: int = 64,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
        unknown: str = "error",
        *,
        sampling: Sampling | None = None,
    ) -> Iterator[str]:
        """Yield the decoded text piece by piece, sampled as
        :meth:`StreamingPredictor.generate` samples (``temperature=0``: greedy; the
        options as keywords or one ``sampling=Sampling(...)``); ``unknown`` as for
        :meth:`start`."""
        picked = Sampling.given(sampling, temperature, top_k, top_p, seed, stop)
        vocab = self.vocab
        if not vocab or not has_specials(vocab):
            raise InputError(
                "generate() needs the decoder's vocabulary with <pad>, <unk>, <bos>, <eos> "
                "first; this decoder's contract has none. Use greedy() for raw token ids."
            )
        source = self._source(source, unknown)  # refused text changes no state
        self.start(source)  # a new decoder sequence, or no change if refused
        logits = self.decoder.step(np.int64(BOS))
        return sample_loop(self.decoder.step, logits, vocab, max_tokens, picked)
