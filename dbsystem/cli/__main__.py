"""``python -m dbsystem.cli``: the same as the ``dbsystem`` command."""

from dbsystem.cli import main

main()
