"""The moderator duties, each a service plus its panel: the gardener tends content, the concierge keeps the door."""
