"""External systems: tasks of requests for systems Lethe cannot reach by SQL."""
