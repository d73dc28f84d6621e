"""Technicians, groups and log-in."""

from lens.auth.models import Technician, TechnicianGroup

__all__ = ["Technician", "TechnicianGroup"]
