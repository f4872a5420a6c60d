"""Federation tests: several Jardin instances and independent peers (Fedify) talking over loopback HTTP."""
