"""Fleets: the hosts Baton acts on (an Ansible inventory) and how steps reach them."""
