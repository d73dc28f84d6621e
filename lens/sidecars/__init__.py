"""Several media sidecars: the registry of live ones, pinning sessions to them, failover,
and closing recordings whose sidecar process is gone."""

from lens.sidecars.registry import RedisRegistry, SidecarInfo, StaticRegistry
from lens.sidecars.router import MediaRouter

__all__ = ["MediaRouter", "RedisRegistry", "SidecarInfo", "StaticRegistry"]
