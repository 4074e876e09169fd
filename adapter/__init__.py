"""Adapters of the use-case ports that are not metadata repositories: disk, clock, ids."""
