"""Run a system on one machine: backing services, process supervisor, edge gateway, dev identity provider."""
