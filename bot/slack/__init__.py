"""The Slack front end (bolt AsyncApp): listeners, run cards, Block Kit rendering."""
