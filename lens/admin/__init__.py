"""The Admin Center: technicians, groups and permissions, settings, reports, audit log."""
