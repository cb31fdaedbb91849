"""The data-path lab (test-only): real NFS servers and clients in network namespaces.

Modules, each usable alone (none imports this package's namespace):
``proc`` (daemons started and stopped by pid), ``netns`` (named network namespaces),
``ganesha`` (a private dbus-daemon and NFS-Ganesha in a given namespace), and the
rest of the lab built on them.  Everything here needs root and tears down what it
started, by pid and by namespace name, also when a test fails.
"""
