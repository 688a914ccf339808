"""Real process deaths at an exact point, for crash-recovery tests.

A handler's exceptions, even ``BaseException``s, end only its unit: the executor catches
them. To test what happens when the *process* dies mid-action (a SIGKILL, a power cut),
run the work in a forked child and make it die where you want::

    from cass_actions_core.testing.crash import die, in_child

    def work():
        runtime = make_runtime(data_dir)          # build everything inside the child
        monkeypatch.setattr(State, "move", lambda *a: die())
        runtime.acquire_lease()
        asyncio.run(runtime.tick())

    assert in_child(work) == DEATH_EXIT_CODE     # the parent then restarts on data_dir

Nothing runs after :func:`die`: no ``finally``, no flush, no lease release, exactly like
a kill. Build the runtime in the child (an SQLite connection must not cross a fork).
POSIX only (``os.fork``).
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

#: The exit code of a process that :func:`die` ended.
DEATH_EXIT_CODE = 86


def die() -> NoReturn:
    """End this process at once, as a kill would (no cleanup of any kind)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(DEATH_EXIT_CODE)


def in_child(work: Callable[[], Any]) -> int:
    """Run ``work`` in a forked child process; its exit code (0 if it returned, 1 if it raised,
    :data:`DEATH_EXIT_CODE` if it died)."""
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            work()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)
