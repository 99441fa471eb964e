"""Our own AMI protocol layer: sans-I/O codec, asyncio client, server check."""
