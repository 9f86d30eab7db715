"""edgeseq.client: stream to an ``edgeseq serve`` server from Python — and the wire protocol.

:class:`StreamClient` steps one remote stream like a local
:class:`~edgeseq.runtime.StreamingPredictor` (``step``, ``reset``, ``snapshot``,
``restore``, ``close``) and resumes it exactly after a dropped connection or a server
restart. :mod:`edgeseq.client.protocol` is the wire protocol as one table of message
types, documented in docs/protocol.md.

Why the protocol lives here, not in :mod:`edgeseq.serve`: both ends speak it, and the
client is the lower end. A thin machine that only streams to a gateway imports this
package with numpy and ``websockets`` (``pip install 'edgeseq[client]'``) and never the
server, the pool or onnxruntime; the server imports the protocol from here. So this
package may import only the torch-free core (``tests/test_layout.py`` checks it), and
arrows run one way: core → client → serve.
"""

from __future__ import annotations

from edgeseq.client._client import ResumeInfo, ResumeWarning, StreamClient, load_tokens

__all__ = ["ResumeInfo", "ResumeWarning", "StreamClient", "load_tokens"]
