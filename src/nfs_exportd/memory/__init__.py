"""Memory: what nfs-exportd keeps between cycles in state_dir - removal counters, the
last verified files, the lock and the rollback-hold (``state``), status.json
(``status``), the journal of applied changes (``journal``).

Imports decide (the values it stores) and the shared top-level modules; never read or apply.
"""
