"""The ``cass-actions`` command line: a thin layer over the Python API."""
