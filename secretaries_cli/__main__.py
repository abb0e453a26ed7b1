"""`python -m secretaries_cli`."""

from secretaries_cli.launch import main

main()
