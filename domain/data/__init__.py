"""Reference data shipped with the domain (read by the modules beside it; see README.md here for sources)."""
