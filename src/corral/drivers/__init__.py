"""Drivers: what runs instances. `process` (bubblewrap sandboxes) and an in-memory fake.

Each adapter implements corral.ports.driver.Driver and passes tests/contracts/.
"""

from corral.drivers.fake import FakeDriver
from corral.drivers.process import ProcessDriver

__all__ = ["FakeDriver", "ProcessDriver"]
