"""Export edgeseq's own models (SeqModel, Seq2Seq) with their topology, task and vocabulary.

Single-graph topologies (many_to_many, many_to_one, one_to_one) give one file, and so
does a :class:`~edgeseq.train.audio.Transcriber`: raw-sample frames in, its front-end in
the graph, its fixed windows (``window`` new samples per step, sample ``rate``) and CTC
``blank`` in the
contract, so the runtime takes any number of raw samples per call.
Conditioned decoders give two: the decoder ``MODEL.onnx`` and an init model that
produces its first state, named in the decoder's contract (``model.extra.init_model``):

- ``one_to_many``: ``MODEL.init.onnx`` maps a condition ``(batch, C)`` to the state.
- ``seq2seq``: ``MODEL.encoder.onnx`` streams the source; its final state starts the decoder.
  An attention decoder also takes the encoder's outputs as per-stream memory
  (``memory_in.memory``, ``memory_in.mask``; see :func:`~edgeseq.exporters.export`), padded
  to ``max_source`` rows; ``model.extra.attention`` records the kind and those names.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeseq.contract import Contract, ModelFacts, Preprocessing, TensorSpec
from edgeseq.errors import ExportError
from edgeseq.exporters._onnx import (
    Backend,
    attach_contract,
    read_contract,
    save_checked,
    torch_to_onnx,
)
from edgeseq.exporters._options import ExportOptions
from edgeseq.exporters._write import producer
from edgeseq.exporters.export import export, memory_input_name, sibling_path, state_input_name
from edgeseq.train.audio import Transcriber
from edgeseq.train.models import AttentionDecoder, Seq2Seq, SeqModel

__all__ = ["explain_model", "export_model", "graphs_to_verify", "init_model_path"]


class _Frames(nn.Module):
    """``x -> y``: the SeqModel's per-frame output; state is lifted by the exporter."""

    def __init__(self, model: SeqModel) -> None:
        super().__init__()
        self.m = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.m(x)[0]


class _Attending(nn.Module):
    """``x, memory, mask -> logits``: an attention decoder; state is lifted by the exporter."""

    def __init__(self, model: AttentionDecoder) -> None:
        super().__init__()
        self.m = model

    def forward(self, x: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.m.attend(x, memory, mask)[0]


def _memory_example(model: AttentionDecoder, rows: int, batch: int = 2) -> dict[str, torch.Tensor]:
    """A memory of ``rows`` rows per stream, the later ones masked as padding in row 1."""
    g = torch.Generator().manual_seed(0)
    memory = torch.randn(batch, rows, int(model.config.extra["memory_size"]), generator=g)
    mask = torch.ones(batch, rows)
    mask[1:, rows // 2 + 1 :] = 0.0
    return {"memory": memory, "mask": mask}


class _Bridge(nn.Module):
    """``condition (batch, C) -> initial state tensors``, for one-to-many decoders.

    ``parts`` gives, per decoder state pair, ``(state index, first, stop)`` along axis 0:
    the decoder may carry a state in parts (one pair per layer).
    """

    def __init__(self, model: SeqModel, parts: list[tuple[int, int, int]]) -> None:
        super().__init__()
        self.m = model
        self.parts = parts

    def forward(self, condition: torch.Tensor) -> tuple[torch.Tensor, ...]:
        states = self.m.init_state(condition=condition)
        whole = [states[i] for i, start, stop in self.parts if stop - start == len(states[i])]
        if len(whole) == len(self.parts):
            return tuple(whole)
        return tuple(states[i][start:stop] for i, start, stop in self.parts)


def init_model_path(path: str | Path, role: str) -> Path:
    """Where the init model of decoder ``path`` lives: ``x.onnx`` -> ``x.<role>.onnx``."""
    return sibling_path(path, role)


def _example(model: SeqModel, batch: int = 2, time: int = 5) -> torch.Tensor:
    c = model.config
    if c.vocab_size:
        return torch.randint(0, c.vocab_size, (batch, time), dtype=torch.int64)
    return torch.randn(batch, time, c.input_size)


def _facts(model: SeqModel, topology: str, **extra: object) -> ModelFacts:
    c = model.config
    return ModelFacts(
        cell=c.cell,
        layers=c.layers,
        hidden_size=c.hidden_size,
        input_size=c.input_size,
        output_size=c.output_size,
        topology=topology,
        task=c.task,
        labels=c.extra.get("labels"),
        extra={
            "config": dataclasses.asdict(c),
            # the frame's column names in order (SeqConfig.extra["features"], set by train)
            **({"features": list(c.extra["features"])} if c.extra.get("features") else {}),
            **extra,
        },
    )


def export_model(
    model: SeqModel | Seq2Seq | Transcriber,
    path: str | Path,
    *,
    mode: str | None = None,
    chunk: int | None = None,
    backend: Backend = "torchscript",
    preprocessing: Preprocessing | None = None,
    source_preprocessing: Preprocessing | None = None,
    lengths: bool | None = None,
    max_source: int = 64,
    options: ExportOptions | None = None,
) -> dict[str, Contract]:
    """Export a trained edgeseq model; return ``{file path: contract}`` for every file written.

    ``preprocessing`` goes into the (decoder's) contract: feature mean/std, output scaling,
    or the vocabulary of token models. ``source_preprocessing`` is the encoder's, for
    :class:`~edgeseq.train.models.Seq2Seq`. ``max_source`` is the longest source (in
    frames or tokens) an attention decoder's memory holds. ``mode``, ``chunk``, ``backend``
    and ``lengths`` (or them as one ``options=``
    :class:`~edgeseq.exporters.ExportOptions`) are as in :func:`~edgeseq.exporters.export`;
    the topology decides ``offline`` (one-to-one graphs carry no state). A fixed-chunk
    graph's one-step graph is among the files returned.
    """
    opts = _options(options, mode=mode, chunk=chunk, backend=backend, lengths=lengths)
    path = Path(path)
    model = model.eval()
    written: dict[str, Contract] = {}
    if isinstance(model, Transcriber):
        written[str(path)] = _export_transcriber(model, path, opts, preprocessing)
        _add_step(written, path)
        return written
    if isinstance(model, Seq2Seq):
        enc_path = init_model_path(path, "encoder")
        parts = [  # the encoder first: the decoder's contract names it
            (
                model.encoder,
                enc_path,
                source_preprocessing,
                {"role": "encoder", "decoder": path.name},
            ),
            (model.decoder, path, preprocessing, {"role": "decoder", "init_model": enc_path.name}),
        ]
        if isinstance(model.decoder, AttentionDecoder):
            if not isinstance(max_source, int) or max_source < 1:
                raise ExportError(f"max_source must be a positive int, got {max_source!r}")
            parts[1][3]["attention"] = {
                "kind": model.attention,
                "memory": memory_input_name("memory"),
                "mask": memory_input_name("mask"),
                "max_source": max_source,
            }
        for part, file, prep, extra in parts:
            attending = isinstance(part, AttentionDecoder)
            written[str(file)] = export(
                _Attending(part) if attending else _Frames(part), file, example=_example(part),
                preprocessing=prep, facts=_facts(part, "seq2seq", **extra), options=opts,
                memory=_memory_example(part, max_source) if attending else None,
            )  # fmt: skip
            _add_step(written, file)
        return written
    topology = model.config.topology
    if topology == "one_to_many":
        init_path = init_model_path(path, "init")
        decoder = export(
            _Frames(model),
            path,
            example=_example(model),
            preprocessing=preprocessing,
            facts=_facts(model, topology, role="decoder", init_model=init_path.name),
            options=opts,
        )
        written[str(init_path)] = _export_bridge(model, init_path, decoder, opts.backend)
        written[str(path)] = decoder
        _add_step(written, path)
        return written
    written[str(path)] = export(
        _Frames(model),
        path,
        example=_example(model),
        preprocessing=preprocessing,
        facts=_facts(model, topology),
        # one-to-one frames are independent: nothing to carry
        options=dataclasses.replace(opts, offline=topology == "one_to_one"),
    )
    _add_step(written, path)
    return written


def _options(options: ExportOptions | None, **keywords: Any) -> ExportOptions:
    """:class:`ExportOptions` for an edgeseq model, whose topology decides ``offline``."""
    opts = ExportOptions.given(options, **keywords)
    if opts.offline:
        raise ExportError(
            "offline applies to export() of your own modules (CLI: --offline with "
            "--factory); an edgeseq model's topology already decides whether it streams "
            "(one-to-one graphs carry no state)"
        )
    return opts


def _add_step(written: dict[str, Contract], path: Path) -> None:
    """Add the one-step graph :func:`export` wrote beside ``path`` (if any) to ``written``."""
    ref = written[str(path)].model.extra.get("step_model")
    if isinstance(ref, dict):
        step = path.with_name(ref["file"])
        written[str(step)] = read_contract(step)


def explain_model(
    model: SeqModel | Seq2Seq,
    *,
    mode: str | None = None,
    chunk: int | None = None,
    backend: Backend = "torchscript",
    lengths: bool | None = None,
    options: ExportOptions | None = None,
) -> list[Any]:
    """How each streaming graph :func:`export_model` writes for ``model`` will stream
    (``options`` or its keywords as there)."""
    from edgeseq.exporters.explain import explain

    opts = _options(options, mode=mode, chunk=chunk, backend=backend, lengths=lengths)
    model = model.eval()
    parts = [model.encoder, model.decoder] if isinstance(model, Seq2Seq) else [model]
    offline = not isinstance(model, Seq2Seq) and model.config.topology == "one_to_one"
    opts = dataclasses.replace(opts, offline=offline)
    reports = []
    for role, part in zip(["encoder", "decoder"] if len(parts) > 1 else [""], parts):
        report = explain(_Frames(part), _example(part), options=opts)
        report.model = f"{type(model).__name__} {role}".strip()
        reports.append(report)
    return reports


def graphs_to_verify(
    model: SeqModel | Seq2Seq | Transcriber, path: str | Path
) -> list[tuple[Path, nn.Module | None]]:
    """Every file :func:`export_model` wrote for ``model`` at ``path``, with the module each
    streaming graph computes (None for the one-to-many bridge, checked by its own rule)."""
    path = Path(path)
    if isinstance(model, Transcriber):
        return [(path, model)]
    if isinstance(model, Seq2Seq):
        decoder = model.decoder
        return [
            (
                path,
                _Attending(decoder) if isinstance(decoder, AttentionDecoder) else _Frames(decoder),
            ),
            (init_model_path(path, "encoder"), _Frames(model.encoder)),
        ]
    if model.config.topology == "one_to_many":
        return [(path, _Frames(model)), (init_model_path(path, "init"), None)]
    return [(path, _Frames(model))]


def _export_transcriber(
    model: Transcriber, path: Path, opts: ExportOptions, preprocessing: Preprocessing | None
) -> Contract:
    spec = model.front.spec
    facts = _facts(
        model.rnn,
        "many_to_many",
        front_end=dataclasses.asdict(spec),
        window=spec.window,
        rate=spec.rate,
        blank=0,
    )  # fmt: skip  (the frames' other window - context samples are the left context)
    facts = dataclasses.replace(facts, input_size=spec.frame_size, task="transcribe")
    example = torch.randn(2, 5, spec.frame_size) * 0.1
    return export(
        model, path, example=example, preprocessing=preprocessing, facts=facts, options=opts
    )


def _export_bridge(model: SeqModel, path: Path, decoder: Contract, backend: Backend) -> Contract:
    """The condition -> initial state graph; its outputs are named as the decoder's inputs."""
    c = model.config
    cond = torch.randn(2, c.condition_size or 1)
    names = [state_input_name("m.rnn", n) for n in c.state_names]
    views = decoder.state_views()
    if [v.name for v in views] != names:
        raise AssertionError(f"bridge states {names} != decoder states {decoder.state_views()}")
    parts = []  # each decoder pair: which state, which layers
    for i, v in enumerate(views):
        start = 0
        for k in v.pairs:
            size = int(decoder.states[k].shape[0]) if len(v.pairs) > 1 else c.layers
            parts.append((i, start, start + size))
            start += size
    out_names = decoder.state_inputs  # one output per decoder pair, named as its input
    dyn = {"condition": {0: "batch"}, **{n: {1: "batch"} for n in out_names}}
    proto = torch_to_onnx(_Bridge(model, parts), (cond,), ["condition"], out_names, dyn, backend)
    outputs = [TensorSpec(s.input, s.shape, s.dtype, s.batch_axis, None) for s in decoder.states]
    contract = Contract(
        inputs=[TensorSpec("condition", ["batch", c.condition_size or 1], "float32", 0, None)],
        outputs=outputs,
        model=dataclasses.replace(
            _facts(model, "one_to_many", role="init", decoder=Path(decoder_name(path)).name),
            stateful=False,
            mode="native",
        ),
        producer=producer(backend),
    )
    contract = attach_contract(proto, contract)  # as stored: with the weights' digest
    save_checked(proto, path)
    return contract


def decoder_name(init_path: Path) -> str:
    """``x.init.onnx`` -> ``x.onnx``."""
    stem = init_path.name.rsplit(".", 2)[0]
    return f"{stem}{init_path.suffix}"
