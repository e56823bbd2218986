"""Text utilities shared by data (reference solutions) and verifiers (model output); pure
Python, importing nothing of bonjax."""
