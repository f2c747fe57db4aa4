"""Keep N cores busy while a command runs, to try the test suite on a loaded machine:

    python scripts/busy_cores.py 2 -- python -m pytest

Without a command it spins until stopped (Ctrl+C). The spinning processes end with it.
"""

from __future__ import annotations

import multiprocessing
import subprocess
import sys


def spin() -> None:
    while True:
        pass


def main(argv: list[str]) -> int:
    if not argv or not argv[0].isdigit():
        print("usage: python scripts/busy_cores.py N [-- COMMAND...]", file=sys.stderr)
        return 2
    command = argv[2:] if argv[1:2] == ["--"] else argv[1:]
    spinners = [multiprocessing.Process(target=spin, daemon=True) for _ in range(int(argv[0]))]
    for process in spinners:
        process.start()
    try:
        if command:
            return subprocess.call(command)
        for process in spinners:
            process.join()
        return 0
    except KeyboardInterrupt:
        return 130
    finally:
        for process in spinners:
            process.terminate()
            process.join()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
