"""nfs-exportd: keep an NFS server's exports in sync with a multi-tenant OpenStack cloud."""

__version__ = "0.1.0"
