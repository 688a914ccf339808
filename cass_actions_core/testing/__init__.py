"""Test kit for pack authors and for cass-actions' own tests.

- :mod:`cass_actions_core.testing.fake_anthropic`: a fake Messages API on 127.0.0.1 that the
  real Anthropic SDK talks to.
- :mod:`cass_actions_core.testing.pytest_plugin`: pytest fixtures (loaded automatically
  when cass-actions is installed; ``pip install cass-actions[testing]``; see docs/testing.md).
- :mod:`cass_actions_core.testing.crash`: real process deaths at an exact point (``die``
  inside a forked child, ``in_child``), for crash-recovery tests.
"""
