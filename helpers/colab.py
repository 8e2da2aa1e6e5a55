"""`python -m helpers.colab`: the command; its code lives in helpers.runner.colab."""

from helpers.runner.colab import main

if __name__ == "__main__":
    raise SystemExit(main())
