"""Memory pack for cass-actions: conversations, summaries, titles, consolidation and knowledge notes."""
