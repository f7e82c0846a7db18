"""State shared by every worker process (approvals, limit windows, lockouts), behind interfaces that a
networked store can implement for multi-replica deployments; SQLite (WAL) implementations by default."""
