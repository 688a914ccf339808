"""Wonderland pack for cass-actions: a small text world the daemon explores, reflects in and changes."""
