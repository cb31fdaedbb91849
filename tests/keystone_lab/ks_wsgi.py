"""Keystone's public WSGI application for gunicorn (run inside the Keystone venv).

PyPI's keystone ships no ``keystone-wsgi-public`` script, and its oslo.config parses
``sys.argv``: gunicorn's own arguments would be rejected, so they are hidden first.
The config comes from ``$OS_KEYSTONE_CONFIG_DIR/keystone.conf``.
"""

import sys

sys.argv = sys.argv[:1]

from keystone.server.wsgi import initialize_public_application  # noqa: E402

application = initialize_public_application()
