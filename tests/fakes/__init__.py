"""In-process stand-ins for the ports of calsync.ports (no moto, no emulator): unit tests run the
rules on these in milliseconds."""
