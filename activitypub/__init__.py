"""Federation over ActivityPub (built in issue 3); imports forum and roles, never the reverse."""
