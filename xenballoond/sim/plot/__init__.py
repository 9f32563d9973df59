"""Pictures of simulator runs: ``series`` (pure: summaries to panels) and
``draw`` (matplotlib, imported only when a plot is drawn)."""
