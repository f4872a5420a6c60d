"""The JSON API v1: bearer tokens, problem+json errors, the same permission checks as the pages."""
