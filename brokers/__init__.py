"""Broker adapters: the shared protocol and plumbing, the registry of adapters, and one folder per broker."""
