"""The gardener: curate, tag, archive and prune content (built in a later issue)."""
