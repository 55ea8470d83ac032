"""netns_lab."""
