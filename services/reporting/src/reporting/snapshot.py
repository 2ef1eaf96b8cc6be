"""`python -m reporting.snapshot`: snapshot the read models now, or `--list` them."""

from reporting.entrypoints.snapshot import main

if __name__ == "__main__":
    main()
