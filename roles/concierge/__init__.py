"""The concierge: access, welcome flows and abuse reports (built in a later issue)."""
