"""Wire schemas (``*.proto``) and the Python modules generated from them.

The ``*_pb2.py`` / ``*_pb2.pyi`` files are generated: edit the ``.proto`` and run
``python -m proto.generate``; never edit them by hand. Import them as
``from proto import raft_pb2``.
"""
