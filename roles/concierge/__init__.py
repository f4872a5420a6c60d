"""The concierge: who gets in and with what rights. Built so far: follow requests (`followers`), in the
`/concierge` panel (`panel`) and API v1 (`api`); access, welcome flows and abuse reports come later."""
