"""What each family of chat commands does, one module a family: ``guide`` (help,
playbooks, describe), ``runs`` (run, status), ``approvals`` (approve, reject),
``schedules``, ``lists`` (history, alerts, stats, hosts), and ``replies`` (the ``Reply``
they all answer with). ``bot.commands.Commands`` parses, checks access, audits and
calls them."""
