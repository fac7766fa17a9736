"""``python -m wsod_mammo`` is the ``wsod`` command."""

from wsod_mammo.commands import main

if __name__ == "__main__":
    main()
