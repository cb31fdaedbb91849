"""Read: what the world says now - the projects file, the cloud's projects and addresses
(``inventory``), the managed files in exports_dir (``exportsdir``).

What could not be read is reported as unknown, never as empty.  Imports only the shared
modules at the package's top level; never apply, memory or decide.
"""
