"""The session actor: one conversation's coordinator (no ML imports: it stays a light process)."""
