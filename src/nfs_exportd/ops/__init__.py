"""Ops: what operators see - the Icinga check (``check``), Prometheus metrics
(``metrics``), sd_notify (``notify``), "why does this address have these exports"
(``explain``).  Built on memory's records and decide's values; never imported by them.
"""
