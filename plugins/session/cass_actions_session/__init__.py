"""Session pack for cass-actions: bounded multi-turn LLM sessions, the self model and the research queue."""
