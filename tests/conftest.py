"""Suite-wide checks: every contract the tests write is validated against the JSON Schema.

``Contract.to_json`` is how every contract reaches a file (exporters, quantize, to_ort,
``inspect --write-contract``), so wrapping it checks every exported file's contract
against ``edgeseq/contract.schema.json`` in every test that exports one.
"""

from __future__ import annotations

import json

import pytest

from edgeseq.contract import Contract, json_schema


@pytest.fixture(autouse=True, scope="session")
def _contracts_follow_the_schema():
    import jsonschema

    validator = jsonschema.Draft202012Validator(json_schema())
    original = Contract.to_json

    def to_json(self: Contract) -> str:
        text = original(self)
        errors = sorted(validator.iter_errors(json.loads(text)), key=lambda e: list(e.path))
        if errors:
            where = "/".join(map(str, errors[0].absolute_path)) or "<root>"
            raise AssertionError(
                f"contract breaks contract.schema.json at {where}: {errors[0].message}"
            )
        return text

    Contract.to_json = to_json  # type: ignore[method-assign]
    yield
    Contract.to_json = original  # type: ignore[method-assign]


@pytest.fixture
def one_thread():
    """torch on one thread for the test: small recurrent models train ~10x faster so on a
    busy machine. Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
