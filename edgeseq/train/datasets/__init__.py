"""Small data files that ship inside the edgeseq package.

Read them through :func:`edgeseq.train.data.load_demo_series`; see ``README.md`` in
this directory for source and licence.
"""
