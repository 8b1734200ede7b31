"""Wiring of stages into runs and Prefect flows, and the command line. No algorithms here."""
