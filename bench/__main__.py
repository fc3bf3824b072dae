"""``python -m bench`` (``make bench`` runs ``bench/run.py``, the same): see bench/config.py for the variables.

python -m bench                  # the run (BENCH_* from the environment)
python -m bench --help           # the BENCH_* variables, their defaults and meaning
python -m bench worker NAME SIZE OUT   # one contender in a worker process (bench/worker.py)
"""

from __future__ import annotations

import os
import sys


def use_library() -> None:
    """The bench's one path setup: the library under test and the project on ``sys.path``.

    The library is this tree's ``plugins/`` (a baseline's in its workers: BENCH_PLUGINS), first; the
    project (``tools/``) last. Workers already have both on PYTHONPATH, and once the library is installed
    editable into the venv this adds nothing that is not there.
    """
    from bench.config import library_paths

    root, plugins = library_paths(os.environ)
    if str(plugins) not in sys.path:
        sys.path.insert(0, str(plugins))
    if str(root) not in sys.path:
        sys.path.append(str(root))


def run(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[1] in ("-h", "--help"):
        from bench.config import describe

        print(__doc__)
        print("Environment:")
        print(describe())
        return 0
    use_library()
    if len(argv) >= 2 and argv[1] == "worker":
        from bench.worker import worker_main

        worker_main(argv[2], int(argv[3]), argv[4])
        return 0
    from bench.main import main

    return main()


if __name__ == "__main__":
    sys.exit(run(sys.argv))
