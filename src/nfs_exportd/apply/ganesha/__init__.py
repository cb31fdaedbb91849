"""The Ganesha backend: one generated EXPORT file per managed line (``render``), its
Export_Id kept stable (``ids``), applied and read back one export at a time over DBus
(``dbus``, ``backend``).  Never a SIGHUP or a full reload: at 5,000 exports one takes
over a minute, and one that meets a bad block can drop every export."""
