"""Item files into the store."""
