"""The verbs of the forum. Services take typed arguments, return models or raise `forum.errors`."""
