"""The training side of edgeseq: models, training loop, data, checkpoints, the demo.

Everything here needs PyTorch (``pip install 'edgeseq[torch]'``) except the plain data
loaders, and none of it is needed on a device. :mod:`.models` holds the lecture's model
family (``SeqModel`` for RNN/LSTM/GRU in the four topologies, ``Seq2Seq``);
:mod:`.training` trains them by backpropagation through time (whole sequences or
truncated BPTT, with clipping), :mod:`.ctc` with CTC for transcription; :mod:`.audio` is
a log-mel front-end that exports into the graph; :mod:`.data` and :mod:`.catalogues` load
the real data sets that ship inside packages, :mod:`.speech` synthesises speech;
:mod:`.tasks` backs ``edgeseq train``; :mod:`.checkpoint` saves and loads ``weights_only``
checkpoints; :mod:`.demo` backs ``edgeseq demo``.

Import direction: this subpackage may import the torch-free core (:mod:`edgeseq.contract`,
:mod:`edgeseq.errors`, :mod:`edgeseq.vocab`, :mod:`edgeseq.table`) and torch; the core and
:mod:`edgeseq.runtime` never import it. Exporters and tools above it may.
"""
