"""`python -m helpers.generate`: the command; its code lives in helpers.study.generate."""

from helpers.study.generate import main

if __name__ == "__main__":
    raise SystemExit(main())
