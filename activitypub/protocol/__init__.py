"""Framework-free protocol code (signatures, JSON-LD, the guarded client); imports nothing of ours."""
