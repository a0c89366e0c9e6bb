"""Runs across processes: the leases under which one node drives a run, and the command
inbox through which everyone else asks it for changes."""
