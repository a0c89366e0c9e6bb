"""Who may do what: access rules, BATON_CONFIG's people and groups, dashboard sessions."""
