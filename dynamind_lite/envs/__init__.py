"""Environments the agent acts in. Sokoban is the one implemented so far."""
