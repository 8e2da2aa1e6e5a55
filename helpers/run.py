"""`python -m helpers.run`: the command; its code lives in helpers.runner.run."""

from helpers.runner.run import main

if __name__ == "__main__":
    raise SystemExit(main())
