"""Apply: put a set of files in force and say whether it took - write atomically, run
``exportfs``, read the result back, undo on failure (``exportfs``), and the marker that
finishes an apply a crash interrupted (``pending``).

Imports only the shared modules at the package's top level; never read, memory or decide.
"""
