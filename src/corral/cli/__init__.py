"""The command line: parsing and rendering only."""

import os

# pydantic looks for plugins in every installed distribution's entry points when the first
# model is built (~10 ms of importlib.metadata per command); corral uses none.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
