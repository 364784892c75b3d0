"""``python -m deoss``: the deoss command, for when the entry point script is not on PATH."""

from deoss.cli.main import main

if __name__ == "__main__":
    main()
