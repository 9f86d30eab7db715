"""How an export names what it writes: the graph's state and memory tensors (the contract
records which is which), and the graphs it writes beside the model file. Chosen once, here,
so that :func:`~edgeseq.exporters.export`, ``export_model``, ``verify`` and ``quantize`` agree.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "memory_input_name",
    "memory_output_name",
    "sibling_path",
    "state_input_name",
    "state_output_name",
]


def state_input_name(path: str, name: str) -> str:
    """Graph input carrying ``name`` (h, c, cache) of the module at ``path``.

    For an explicit state, ``path`` is forward's argument and ``name`` the tensor's place
    in it (``state_in.state.0.1``; a lone tensor has no name: ``state_in.state``).
    """
    return f"state_in.{path}.{name}" if name else f"state_in.{path}"


def state_output_name(path: str, name: str) -> str:
    return f"state_out.{path}.{name}" if name else f"state_out.{path}"


def memory_input_name(name: str) -> str:
    """Graph input carrying the per-stream memory passed to ``forward`` as ``name=``."""
    return f"memory_in.{name}"


def memory_output_name(name: str) -> str:
    return f"memory_out.{name}"


def sibling_path(path: str | Path, role: str) -> Path:
    """A graph written beside ``path``: ``x.onnx`` -> ``x.<role>.onnx``."""
    p = Path(path)
    return p.with_name(f"{p.stem}.{role}{p.suffix or '.onnx'}")
