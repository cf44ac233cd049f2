"""The ``hdr-dcs`` command line."""
