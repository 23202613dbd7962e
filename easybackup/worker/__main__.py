"""`python -m easybackup.worker`: the process the worker pool starts — the `easybackup worker` command without
the command line's imports, so a run starts its dump sooner."""

from easybackup.worker.main import run_and_exit

if __name__ == "__main__":
    run_and_exit()
