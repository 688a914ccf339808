"""The README walk-through pack (``cass-actions-hello``), plus ``hello.publish``: what docs/testing.md tests."""
