"""`python -m core.cli ...` = `semtriage ...`."""

from core.cli.root import main

main()
