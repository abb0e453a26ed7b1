"""`python -m secretaries_cli`."""

from secretaries_cli.app import main

main()
