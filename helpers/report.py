"""`python -m helpers.report`: the command; its code lives in helpers.runner.report."""

from helpers.runner.report import main

if __name__ == "__main__":
    raise SystemExit(main())
