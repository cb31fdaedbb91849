"""One module per command of ``nfs-exportd``; each has ``run(args) -> exit code``.

``cli`` parses the arguments and imports only the module of the command it runs, so
that a command loads only what it uses (the Icinga ``check`` no metrics server).
"""
