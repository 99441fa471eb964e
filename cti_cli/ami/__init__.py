"""Our own AMI protocol layer: sans-I/O codec and protocol, asyncio client, server check."""
