"""Running the operator CLI in-process: its exit status and what it printed."""
from __future__ import annotations

import pytest

from ops.cli import main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    out = capsys.readouterr()
    return exited.value.code, out.out, out.err
