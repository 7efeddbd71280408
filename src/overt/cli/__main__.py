"""Allow `python -m overt.cli`."""

from overt.cli.main import main

main()
