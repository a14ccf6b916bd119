"""`python -m core.training --default`: rebuild the shipped default model (see recipes.main)."""

from core.training.recipes import main

main()
