"""Example dialog scripts, shipped as package data."""
