"""Journal pack for cass-actions: the daily journal entry, the weekly review and the nightly dream."""
