"""`python -m reporting.rebuild`: rebuild every read model from the topics (see entrypoints)."""

from reporting.entrypoints.rebuild import main

if __name__ == "__main__":
    main()
