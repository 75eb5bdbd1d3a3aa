"""How a command ends after a multi-process (``accelerate launch``) run."""

from __future__ import annotations

import os
import sys


def finish(rc: int, num_processes: int) -> int:
    """Return ``rc``; after a multi-process run, exit with it at once instead.

    Call it once everything is written and the process group is destroyed. The interpreter's teardown is skipped
    because a gloo rank occasionally aborted in a C++ destructor there ("terminate called without an active
    exception", exit -6, about one launch in ten under load), which failed a run that had finished.
    """
    if num_processes <= 1:
        return rc
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)
