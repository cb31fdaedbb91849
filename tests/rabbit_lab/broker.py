"""The broker lives in the test-only simulator package (the benchmark and ``make demo``
start one too); the tests import it from here."""

from nfs_exportd_sim.rabbit import PASSWORD, USER, VHOST, Broker, BrokerFailed, free_port, launch

__all__ = ["PASSWORD", "USER", "VHOST", "Broker", "BrokerFailed", "free_port", "launch"]
